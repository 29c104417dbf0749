package config

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// EnvClusterSecret holds the cluster's secret itself; like the S3 keys it
// is read directly, never a config key, and wins over cluster.secret_file.
const EnvClusterSecret = "MIRRORD_CLUSTER_SECRET"

// minClusterSecret is the shortest secret taken: the peer route serves
// anything of the tree to whoever has it.
const minClusterSecret = 16

// Cluster makes this node one of several over one bucket (issue 17,
// docs/CLUSTER.md): each file has one owner among the live nodes, and the
// others fetch it from that owner over the peer route.
type Cluster struct {
	// Node names this node in its logs; default the host name.
	Node string `mapstructure:"node" yaml:"node"`
	// Advertise is this node's URL as the other nodes reach it,
	// http(s)://host[:port]. Setting it turns the cluster on.
	Advertise string `mapstructure:"advertise" yaml:"advertise"`
	// Peers are every node's URLs, this one's among them or not: the
	// same list on every node.
	Peers []string `mapstructure:"peers" yaml:"peers"`
	// SecretFile holds the secret the nodes share for the peer route,
	// one line; EnvClusterSecret overrides it.
	SecretFile string `mapstructure:"secret_file" yaml:"secret_file"`

	// Secret is the secret itself, filled in by Load; never encoded.
	Secret string `mapstructure:"-" yaml:"-" json:"-"`
}

// Enabled reports whether this node is one of a cluster.
func (c Cluster) Enabled() bool { return c.Advertise != "" }

// Format prints c as fmt would with the secret shown as <redacted>.
func (c Cluster) Format(f fmt.State, verb rune) {
	type plain Cluster // no Format method: no recursion
	p := plain(c)
	p.Secret = redactSecret(p.Secret)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// loadClusterSecret fills in the secret and the node's default name, as
// loadS3Keys does the S3 keys.
func (c *Config) loadClusterSecret() {
	if !c.Cluster.Enabled() {
		return
	}
	if c.Cluster.Node == "" {
		if h, err := os.Hostname(); err == nil {
			c.Cluster.Node, _, _ = strings.Cut(h, ".")
		}
	}
	c.Cluster.Secret = c.loadSecret("cluster.secret", EnvClusterSecret, c.Cluster.SecretFile)
}

// checkCluster checks the cluster section, when it is on.
func (c *Config) checkCluster(bad func(key, format string, args ...any)) {
	cl := c.Cluster
	if !cl.Enabled() {
		if len(cl.Peers) > 0 {
			bad("cluster.advertise", "required with cluster.peers: this node's URL as the others reach it")
		}
		return
	}
	if c.Storage.Backend != BackendS3 {
		bad("cluster", "needs storage.backend s3: the nodes share one bucket")
	}
	// A write reaching any node is forwarded to the one that publishes
	// the hosted repos, which must know the client's token: the admin
	// token made at first start is each node's own.
	for _, dn := range slices.Sorted(maps.Keys(c.Distros)) {
		for _, rn := range slices.Sorted(maps.Keys(c.Distros[dn].Repos)) {
			if c.Distros[dn].Repos[rn].Mode == ModeHosted && len(c.API.Tokens) == 0 {
				bad("api.tokens", "required in a cluster with hosted repos (%s/%s): the same tokens on every node, as any node may take a write", dn, rn)
				return
			}
		}
	}
	if !nodeName.MatchString(cl.Node) {
		bad("cluster.node", "%q: want 1 to 63 letters, digits, '.', '_' or '-'", cl.Node)
	}
	checkNodeURL("cluster.advertise", cl.Advertise, bad)
	if len(cl.Peers) == 0 {
		bad("cluster.peers", "required: every node's URL, the same list on every node")
	}
	inPeers := false
	for i, p := range cl.Peers {
		checkNodeURL(fmt.Sprintf("cluster.peers[%d]", i), p, bad)
		inPeers = inPeers || sameNode(p, cl.Advertise)
	}
	// Every node must hash over the same list: one that is missing from
	// its own, or spelled otherwise there, sees other owners than the
	// rest.
	if len(cl.Peers) > 0 && !inPeers {
		bad("cluster.peers", "does not list cluster.advertise: give every node the same list, this node's URL among them, spelled as in advertise")
	}
	switch {
	case cl.Secret != "":
		if p := secretProblem(cl.Secret); p != "" {
			bad("cluster.secret", "%s", p)
		} else if len(cl.Secret) < minClusterSecret {
			bad("cluster.secret", "has %d characters: want at least %d", len(cl.Secret), minClusterSecret)
		}
	case cl.SecretFile == "":
		bad("cluster.secret_file", "required with cluster: a file holding the nodes' shared secret, or the secret itself in %s", EnvClusterSecret)
	default:
		if _, err := readKeyFile(cl.SecretFile); err != nil {
			bad("cluster.secret_file", "%v", err)
		}
	}
}

// checkNodeURL accepts http(s)://host[:port] and nothing more.
func checkNodeURL(key, s string, bad func(key, format string, args ...any)) {
	u, err := url.Parse(s)
	if err != nil {
		bad(key, "not a URL of the form http(s)://host[:port]")
		return
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad(key, "%q: want http(s)://host[:port], nothing more", redactURL(u))
	}
}

// sameNode reports whether two node URLs name one node: scheme and host
// compared without case, a trailing '/' ignored.
func sameNode(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}
