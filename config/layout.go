package config

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// Expand fills a layout or URL template the way pacman does: $arch first,
// then $repo, by plain substring replacement, trailing '/' stripped.
func Expand(template, repo, arch string) string {
	s := strings.ReplaceAll(template, "$arch", arch)
	s = strings.ReplaceAll(s, "$repo", repo)
	return strings.TrimRight(s, "/")
}

// RepoDir is the repo/arch folder relative to the tree root, e.g.
// "archlinux/core/os/x86_64"; the HTTP path is the same with a leading '/'.
func (c *Config) RepoDir(distro, repo, arch string) string {
	return distro + "/" + Expand(c.Distros[distro].Layout, repo, arch)
}

// Redacted returns a copy safe to print: token hashes and proxy
// passwords are hidden.
func (c *Config) Redacted() *Config {
	r := *c
	r.Upstream.Proxy = redactProxy(c.Upstream.Proxy)
	r.Distros = make(map[string]Distro, len(c.Distros))
	for name, d := range c.Distros {
		d.Proxy = redactProxy(d.Proxy)
		r.Distros[name] = d
	}
	r.API.Tokens = make([]Token, len(c.API.Tokens))
	for i, t := range c.API.Tokens {
		t.SHA256 = "<redacted>"
		r.API.Tokens[i] = t
	}
	return &r
}

// YAML renders the configuration as a config file would write it.
func (c *Config) YAML() ([]byte, error) { return yaml.Marshal(c) }
