package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// upstreamsYAML is a distro "arch" over data dir dir, with body added to
// its section.
func upstreamsYAML(dir, body string) string {
	return "data_dir: " + dir + "\ndistros:\n  arch:\n    layout: $repo/os/$arch\n    arch: [x86_64]\n" + body
}

func writeList(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUpstreamsFile(t *testing.T) {
	dir := t.TempDir()
	distroList := writeList(t, dir, "mirrorlist", reflectorOutput)
	repoList := writeList(t, dir, "extra-mirrorlist", "Server = https://extra.example/$repo/os/$arch\n")
	c, err := load(t, upstreamsYAML(dir, `    upstreams: ["https://first.example/$repo/os/$arch"]
    upstreams_file: `+distroList+`
    repos:
      core: {mode: proxy}
      extra: {mode: mirror, upstreams_file: `+repoList+`}
      custom: {mode: hosted}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		repo, file string
		list       []string
	}{
		{"core", distroList, []string{"https://first.example/$repo/os/$arch"}},
		{"extra", repoList, nil}, // its own file: the distro's list is not its
		{"custom", distroList, []string{"https://first.example/$repo/os/$arch"}},
	}
	for _, tt := range tests {
		if list, file := c.UpstreamsOf("arch", tt.repo); !slices.Equal(list, tt.list) || file != tt.file {
			t.Errorf("UpstreamsOf(arch, %s) = %q, %q; want %q, %q", tt.repo, list, file, tt.list, tt.file)
		}
	}

	// A file of commented-out servers (pacman-mirrorlist as shipped) is
	// fine beside upstreams; alone it leaves a proxy repo no mirror.
	empty := writeList(t, dir, "empty", "## Worldwide\n#Server = https://geo.example/$repo/os/$arch\n")
	if _, err := load(t, upstreamsYAML(dir, "    upstreams: [\"https://a.example/$repo/os/$arch\"]\n    upstreams_file: "+empty+"\n    repos: {core: {mode: proxy}}\n")); err != nil {
		t.Errorf("an empty upstreams_file beside upstreams: %v", err)
	}
}

func TestUpstreamsRejects(t *testing.T) {
	dir := t.TempDir()
	good := writeList(t, dir, "mirrorlist", reflectorOutput)
	bad := writeList(t, dir, "bad", "# ok\nServer = https://a.example/$repo/os/$arch\nServer = ftp://b.example/\n")
	empty := writeList(t, dir, "empty", "#Server = https://a.example/$repo/os/$arch\n")
	tests := []struct {
		name, body, want string
	}{
		{"missing file", "    upstreams_file: " + dir + "/nope\n    repos: {core: {mode: proxy}}\n",
			"distros.arch.upstreams_file: open " + dir + "/nope: no such file"},
		{"bad line", "    upstreams_file: " + bad + "\n    repos: {core: {mode: proxy}}\n",
			"distros.arch.upstreams_file: " + bad + `:3: Server "ftp://b.example/": want an http://`},
		{"bad line in a repo's", "    upstreams: [\"https://a.example/$repo/os/$arch\"]\n    repos: {core: {mode: proxy, upstreams_file: " + bad + "}}\n",
			"distros.arch.repos.core.upstreams_file: " + bad + ":3: "},
		{"empty file alone", "    upstreams_file: " + empty + "\n    repos: {core: {mode: proxy}}\n",
			"distros.arch.repos.core.upstreams: a proxy repo needs upstreams, or an upstreams_file with a Server line"},
		{"a repo's empty file hides the distro's", "    upstreams_file: " + good + "\n    repos: {core: {mode: mirror, upstreams_file: " + empty + "}}\n",
			"distros.arch.repos.core.upstreams: a mirror repo needs upstreams"},
		{"hosted repo with a file", "    repos: {custom: {mode: hosted, upstreams_file: " + good + "}}\n",
			"distros.arch.repos.custom.upstreams: a hosted repo has no upstreams"},
		{"upstream with a blank", "    upstreams: [\"https://a.example/$repo/os/ $arch\"]\n    repos: {core: {mode: proxy}}\n",
			`distros.arch.upstreams: "https://a.example/$repo/os/ $arch": contains a blank`},
		{"upstream without host", "    upstreams: [\"http:///$repo/os/$arch\"]\n    repos: {core: {mode: proxy}}\n",
			`distros.arch.upstreams: "http:///$repo/os/$arch": want an http:// or https:// URL with a host`},
		{"upstream with a query", "    upstreams: [\"https://a.example/$repo?x=1\"]\n    repos: {core: {mode: proxy}}\n",
			"a query cannot take a file name after it"},
		{"proxy scheme", "    proxy: ftp://proxy.example:21\n    repos: {custom: {mode: hosted}}\n",
			`distros.arch.proxy: "ftp://proxy.example:21": want an http://, https:// or socks5:// URL`},
		{"proxy without scheme", "    proxy: proxy.example:3128\n    repos: {custom: {mode: hosted}}\n",
			`distros.arch.proxy: "proxy.example:3128": want an http://`},
		{"proxy without host", "    proxy: http://\n    repos: {custom: {mode: hosted}}\n",
			`distros.arch.proxy: "http:": the URL has no host`},
		{"proxy with a path", "    proxy: http://proxy.example:3128/pac\n    repos: {custom: {mode: hosted}}\n",
			`distros.arch.proxy: "http://proxy.example:3128/pac": a proxy URL is scheme://[user:password@]host[:port]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, upstreamsYAML(dir, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestUpstreamProxyAndUserAgent(t *testing.T) {
	dir := t.TempDir()
	hosted := "    repos: {custom: {mode: hosted}}\n"
	c, err := load(t, upstreamsYAML(dir, hosted))
	if err != nil {
		t.Fatal(err)
	}
	// "" is filled in by the command, which knows its version.
	if c.Upstream.UserAgent != "" || c.Upstream.Proxy != "" || c.ProxyFor("arch") != "" {
		t.Errorf("defaults: user_agent %q, proxy %q, ProxyFor %q; want all empty", c.Upstream.UserAgent, c.Upstream.Proxy, c.ProxyFor("arch"))
	}

	t.Setenv("MIRRORD_UPSTREAM_PROXY", "http://user:hunter2@proxy.example:3128")
	t.Setenv("MIRRORD_UPSTREAM_USER_AGENT", "pacoloco/1.0")
	if c, err = load(t, upstreamsYAML(dir, hosted)); err != nil {
		t.Fatal(err)
	}
	if c.Upstream.UserAgent != "pacoloco/1.0" || c.ProxyFor("arch") != "http://user:hunter2@proxy.example:3128" {
		t.Errorf("from env: user_agent %q, ProxyFor %q", c.Upstream.UserAgent, c.ProxyFor("arch"))
	}
	if c, err = load(t, upstreamsYAML(dir, "    proxy: socks5://127.0.0.1:1080\n"+hosted)); err != nil {
		t.Fatal(err)
	}
	if p := c.ProxyFor("arch"); p != "socks5://127.0.0.1:1080" {
		t.Errorf("ProxyFor with a distro proxy = %q; want the distro's", p)
	}
	out, err := c.Redacted().YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), "user@") || strings.Contains(string(out), "user:") ||
		!strings.Contains(string(out), "proxy: http://redacted@proxy.example:3128") {
		t.Errorf("redacted YAML shows the proxy's user or password (a token may be either), or no proxy:\n%s", out)
	}
	if c.Upstream.Proxy != "http://user:hunter2@proxy.example:3128" {
		t.Error("Redacted changed the original config")
	}

	t.Setenv("MIRRORD_UPSTREAM_PROXY", "gopher://user:hunter2@proxy.example")
	t.Setenv("MIRRORD_UPSTREAM_USER_AGENT", "mirrord\r\nX-Evil: 1")
	_, err = load(t, upstreamsYAML(dir, hosted))
	for _, want := range []string{`upstream.proxy: "gopher://redacted@proxy.example": want an http://`,
		`upstream.user_agent: "mirrord\r\nX-Evil: 1": a User-Agent cannot contain control characters`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v; want an error with %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load error shows the proxy password: %v", err)
	}
}

// A proxy password with a '/' in it breaks the URL's parse inside the
// password: the error must not quote the piece that url.Parse saw as a port.
func TestProxyParseErrorHidesPassword(t *testing.T) {
	t.Setenv("MIRRORD_UPSTREAM_PROXY", "http://user:wJalrXUtn/FEMI@proxy.example:3128")
	_, err := load(t, "")
	if err == nil || !strings.Contains(err.Error(), "upstream.proxy: not a URL") {
		t.Fatalf("Load = %v; want upstream.proxy: not a URL", err)
	}
	for _, piece := range []string{"wJalr", "FEMI", "Xutn"} {
		if strings.Contains(err.Error(), piece) {
			t.Errorf("Load error quotes a piece of the password (%q): %v", piece, err)
		}
	}
}
