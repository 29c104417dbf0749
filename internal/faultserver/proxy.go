package faultserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Proxy is a forward HTTP proxy on 127.0.0.1 for tests of upstream
// traffic through a proxy: it forwards each plain-HTTP request (the
// absolute URL a client sends a proxy) to its host, or to the address
// Route gave that host, and counts what it forwarded. It refuses CONNECT
// and any request that is not meant for a proxy.
type Proxy struct {
	ts        *httptest.Server
	transport *http.Transport // its own: no proxy of the environment, no pooling with the client's

	mu     sync.Mutex // guards the fields below
	routes map[string]string
	log    []string // absolute URLs forwarded, in arrival order
	agents []string // their User-Agent headers
}

// NewProxy starts a proxy that closes when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	p := &Proxy{transport: &http.Transport{}, routes: map[string]string{}}
	p.ts = httptest.NewServer(p)
	t.Cleanup(func() {
		p.ts.CloseClientConnections()
		p.ts.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// URL is the proxy's URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return p.ts.URL }

// Route sends requests for host (as in the URL: "mirror.example" or
// "mirror.example:8080") to addr (host:port), so that a test can name a
// mirror that no resolver knows, as a proxy on another network would.
func (p *Proxy) Route(host, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[host] = addr
}

// Log returns the absolute URLs the proxy forwarded, in order.
func (p *Proxy) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// UserAgents returns the User-Agent of each forwarded request, as Log.
func (p *Proxy) UserAgents() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.agents...)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || !r.URL.IsAbs() || r.URL.Scheme != "http" {
		http.Error(w, "this test proxy forwards plain http:// requests only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.log = append(p.log, r.URL.String())
	p.agents = append(p.agents, r.UserAgent())
	addr, routed := p.routes[r.URL.Host]
	p.mu.Unlock()

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	if routed {
		out.URL.Host = addr
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
