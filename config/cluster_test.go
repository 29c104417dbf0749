package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testClusterSecret = "cluster-secret-0123456789abcdef"

// proxyOnly replaces the default distros, whose hosted repo no cluster takes.
const proxyOnly = "distros: {archlinux: {repos: {core: {mode: proxy}}}}\n"

// clusterYAML is s3YAML with a cluster section: lines, each "key: value"
// under cluster:.
func clusterYAML(t *testing.T, lines ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(s3YAML(t))
	b.WriteString(proxyOnly)
	b.WriteString("cluster:\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return b.String()
}

func secretFileWith(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCluster(t *testing.T) {
	good := secretFileWith(t, testClusterSecret+"\n")
	base := []string{"node: n1", "advertise: http://10.0.0.1:8080", "peers: [http://10.0.0.1:8080, http://10.0.0.2:8080]", "secret_file: " + good}
	c, err := load(t, clusterYAML(t, base...))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster.Enabled() || c.Cluster.Node != "n1" || len(c.Cluster.Peers) != 2 || c.Cluster.Secret != testClusterSecret {
		t.Errorf("cluster = %+v (secret %v); want n1, 2 peers, the file's secret", c.Cluster, c.Cluster.Secret == testClusterSecret)
	}
	var out bytes.Buffer
	y, _ := c.Redacted().YAML()
	c.WriteSources(&out)
	for what, text := range map[string]string{"YAML": string(y), "sources": out.String(), "%v": fmt.Sprintf("%v %+v", c.Cluster, c.Cluster)} {
		if strings.Contains(text, testClusterSecret) || strings.Contains(text, testClusterSecret[:12]) {
			t.Errorf("%s shows the cluster secret:\n%s", what, text)
		}
	}
	if !strings.Contains(out.String(), "cluster.advertise") {
		t.Errorf("sources lack cluster.advertise:\n%s", out.String())
	}

	t.Run("env wins", func(t *testing.T) {
		t.Setenv(EnvClusterSecret, "from-the-environment-0123456789")
		c, err := load(t, clusterYAML(t, "advertise: http://a:1", "peers: [http://a:1]", "secret_file: /nonexistent"))
		if err != nil || c.Cluster.Secret != "from-the-environment-0123456789" {
			t.Fatalf("Load = %v; secret from env %v", err, err == nil && c.Cluster.Secret != "")
		}
		if c.Cluster.Node == "" {
			t.Error("no default node name (the host name)")
		}
	})
	t.Run("hosted with tokens", func(t *testing.T) {
		yaml := s3YAML(t) + "cluster: {advertise: 'http://a:1', peers: ['http://a:1'], secret_file: " + good + "}\n" +
			"api: {tokens: [{name: ci, sha256: " + strings.Repeat("b", 64) + "}]}\n"
		if _, err := load(t, yaml); err != nil {
			t.Fatalf("a cluster with a hosted repo and api.tokens: %v", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		c, err := load(t, "")
		if err != nil || c.Cluster.Enabled() {
			t.Fatalf("default config: %v, cluster on %v", err, err == nil && c.Cluster.Enabled())
		}
	})

	short := secretFileWith(t, "short\n")
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"peers without advertise", s3YAML(t) + "cluster: {peers: [http://a:1]}\n", "cluster.advertise: required with cluster.peers"},
		{"a hosted repo and no tokens", s3YAML(t) + "cluster: {advertise: 'http://a:1', peers: ['http://a:1'], secret_file: " + good + "}\n", "api.tokens: required in a cluster with hosted repos (archlinux/custom)"},
		{"no s3", proxyOnly + "cluster: {advertise: 'http://a:1', peers: ['http://a:1'], secret_file: " + good + "}\n", "cluster: needs storage.backend s3"},
		{"bad node", clusterYAML(t, "node: 'a b'", "advertise: http://a:1", "peers: [http://a:1]", "secret_file: "+good), `cluster.node: "a b"`},
		{"advertise with a path", clusterYAML(t, "advertise: http://a:1/x", "peers: [http://a:1]", "secret_file: "+good), `cluster.advertise: "http://a:1/x": want http(s)://host[:port]`},
		{"advertise with user info", clusterYAML(t, "advertise: 'http://u:"+testClusterSecret+"@a:1'", "peers: [http://a:1]", "secret_file: "+good), "cluster.advertise:"},
		{"a bad peer", clusterYAML(t, "advertise: http://a:1", "peers: [http://a:1, 'ftp://b']", "secret_file: "+good), `cluster.peers[1]: "ftp://b"`},
		{"advertise not among the peers", clusterYAML(t, "advertise: http://a:1", "peers: [http://b:1]", "secret_file: "+good), "cluster.peers: does not list cluster.advertise"},
		{"no peers", clusterYAML(t, "advertise: http://a:1", "secret_file: "+good), "cluster.peers: required"},
		{"no secret", clusterYAML(t, "advertise: http://a:1", "peers: [http://a:1]"), "cluster.secret_file: required with cluster"},
		{"missing secret file", clusterYAML(t, "advertise: http://a:1", "peers: [http://a:1]", "secret_file: /nonexistent/secret"), "cluster.secret_file: open /nonexistent/secret"},
		{"short secret", clusterYAML(t, "advertise: http://a:1", "peers: [http://a:1]", "secret_file: "+short), "cluster.secret: has 5 characters: want at least 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v; want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testClusterSecret[:12]) || strings.Contains(err.Error(), "short\n") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
