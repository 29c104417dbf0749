package config

import (
	"net/url"
)

// UpstreamsOf is where one repo's mirrors come from: its own upstreams
// and upstreams_file when it names either, else the distro's. The
// mirrors are list's templates, then the file's Server lines that list
// lacks (internal/catalog merges and re-reads them).
func (c *Config) UpstreamsOf(distro, repo string) (list []string, file string) {
	d := c.Distros[distro]
	if r := d.Repos[repo]; len(r.Upstreams) > 0 || r.UpstreamsFile != "" {
		return r.Upstreams, r.UpstreamsFile
	}
	return d.Upstreams, d.UpstreamsFile
}

// ProxyFor is the URL of the HTTP proxy for a distro's mirrors: its own,
// else upstream.proxy; "" is the environment's.
func (c *Config) ProxyFor(distro string) string {
	if p := c.Distros[distro].Proxy; p != "" {
		return p
	}
	return c.Upstream.Proxy
}

// checkUpstreamsFile reads an upstreams_file (if path is not "") and
// returns how many Server lines it has; ok is false when it cannot be
// read or has a bad line, which is reported.
func checkUpstreamsFile(key, path string, bad func(key, format string, args ...any)) (servers int, ok bool) {
	if path == "" {
		return 0, true
	}
	list, err := ReadMirrorlist(path)
	if err != nil {
		bad(key, "%v", err)
		return 0, false
	}
	return len(list), true
}

// checkProxy accepts the URL of an HTTP proxy: http, https or socks5,
// with a host, optionally user:password, and nothing after the port.
func checkProxy(key, value string, bad func(key, format string, args ...any)) {
	if value == "" {
		return
	}
	u, err := url.Parse(value)
	if err != nil {
		// No detail: url.Error repeats the value, and even its inner
		// error may quote a piece of a password (a '/' in it ends the
		// host, so the rest is an "invalid port").
		bad(key, "not a URL of the form scheme://[user:password@]host[:port]")
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h":
		bad(key, "%q: want an http://, https:// or socks5:// URL such as http://proxy.example:3128", redactURL(u))
	case u.Host == "" || u.Hostname() == "":
		bad(key, "%q: the URL has no host", redactURL(u))
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		bad(key, "%q: a proxy URL is scheme://[user:password@]host[:port], nothing after it", redactURL(u))
	}
}

// checkUserAgent refuses what cannot go into a header: control
// characters, and lengths no server logs whole.
func checkUserAgent(key, value string, bad func(key, format string, args ...any)) {
	if len(value) > 256 {
		bad(key, "%q: longer than 256 bytes", value[:32]+"...")
		return
	}
	for _, c := range []byte(value) {
		if c < ' ' && c != '\t' || c == 0x7f {
			bad(key, "%q: a User-Agent cannot contain control characters", value)
			return
		}
	}
}

// redactProxy hides a proxy URL's password, for printing.
func redactProxy(p string) string {
	if u, err := url.Parse(p); err == nil {
		return redactURL(u)
	}
	return p
}

// redactUserinfo is a URL template with any user information hidden.
func redactUserinfo(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return redactURL(u)
	}
	return s
}

// redactURL is u with its user information hidden whole: a token may be
// the user name as well as the password.
func redactURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("redacted")
	return c.String()
}
