package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/upstream"
)

func mustNew(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = "s3cret"
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every node computes the same owner, keys spread over the nodes, and a
// node that drops out moves only its own keys.
func TestOwnerRendezvous(t *testing.T) {
	urls := []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}
	var views []*Cluster
	for _, self := range urls {
		views = append(views, mustNew(t, Options{Self: self, Peers: urls}))
	}
	const n = 3000
	count := map[string]int{}
	owners := make([]string, n)
	for i := range n {
		key := fmt.Sprintf("archlinux/extra/os/x86_64/pkg%d-1.0-1-x86_64.pkg.tar.zst", i)
		o, self := views[0].Owner(key)
		for j, v := range views[1:] {
			if o2, self2 := v.Owner(key); o2 != o || self2 != (o == urls[j+1]) {
				t.Fatalf("%s: node %d says %s, node 0 says %s", key, j+1, o2, o)
			}
		}
		if self != (o == urls[0]) {
			t.Fatalf("%s: owner %s, self %v on node 0", key, o, self)
		}
		owners[i] = o
		count[o]++
	}
	for _, u := range urls {
		if c := count[u]; c < n/3*8/10 || c > n/3*12/10 {
			t.Errorf("%s owns %d of %d keys; want about %d", u, c, n, n/3)
		}
	}
	// Node 0 sees node 2 down: node 2's keys move, nobody else's.
	views[0].nodes[2].live.Store(false)
	for i := range n {
		key := fmt.Sprintf("archlinux/extra/os/x86_64/pkg%d-1.0-1-x86_64.pkg.tar.zst", i)
		o, _ := views[0].Owner(key)
		if owners[i] != urls[2] && o != owners[i] {
			t.Fatalf("%s moved from %s to %s though its owner is live", key, owners[i], o)
		}
		if o == urls[2] {
			t.Fatalf("%s still owned by the node that is down", key)
		}
	}
	// Alone, a node owns everything, whatever it thinks of the others.
	views[0].nodes[1].live.Store(false)
	if o, self := views[0].Owner("x"); !self || o != urls[0] {
		t.Errorf("with both peers down, Owner = %s, %v; want itself", o, self)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, opts := range []Options{
		{Self: "http://a:1"},                                          // no secret
		{Self: "a:1", Secret: "x"},                                    // no scheme
		{Self: "http://a:1/path", Secret: "x"},                        // a path
		{Self: "http://u:p@a:1", Secret: "x"},                         // user info
		{Self: "http://a:1", Peers: []string{"ftp://b"}, Secret: "x"}, // a bad peer
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) = nil error", opts)
		}
	}
}

// The peer route serves only with the secret, only what this node owns,
// and marks what it serves as from a peer.
func TestHandler(t *testing.T) {
	self := "http://127.0.0.1:1"
	other := "http://127.0.0.1:2"
	c := mustNew(t, Options{Self: self, Peers: []string{other}})
	var mine, theirs string
	for i := 0; mine == "" || theirs == ""; i++ {
		key := fmt.Sprintf("archlinux/core/os/x86_64/f%d.pkg.tar.zst", i)
		if _, s := c.Owner(key); s {
			mine = key
		} else {
			theirs = key
		}
	}
	var got string
	h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Path
		if !FromPeer(r.Context()) {
			t.Error("a request of the peer route is not marked FromPeer")
		}
		io.WriteString(w, "body")
	}))
	do := func(key, auth string) int {
		r := httptest.NewRequest("GET", PeerPath+key, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cre", "Basic s3cret", "s3cret"} {
		if code := do(mine, auth); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d; want 401", auth, code)
		}
	}
	if got != "" {
		t.Fatalf("an unauthorised request reached the tree: %s", got)
	}
	for _, bad := range []string{"../etc/passwd", "archlinux//core", "archlinux/./x", ""} {
		if code := do(bad, "Bearer s3cret"); code != http.StatusBadRequest {
			t.Errorf("path %q: %d; want 400", bad, code)
		}
	}
	if code := do(theirs, "Bearer s3cret"); code != http.StatusMisdirectedRequest {
		t.Errorf("a key another node owns: %d; want 421", code)
	}
	if code := do(mine, "Bearer s3cret"); code != 200 || got != "/"+mine {
		t.Errorf("own key: %d, tree saw %q; want 200 and /%s", code, got, mine)
	}
	if FromPeer(context.Background()) {
		t.Error("FromPeer of a plain context")
	}
}

// Fetch: a 404 is upstream.ErrNotFound; a body cut short is an error,
// never an early EOF; the secret is sent.
func TestFetch(t *testing.T) {
	body := strings.Repeat("p", 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", 401)
			return
		}
		switch strings.TrimPrefix(r.URL.Path, PeerPath) {
		case "whole":
			w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			w.Header().Set("Content-Length", "100000")
			io.WriteString(w, body)
		case "cut":
			w.Header().Set("Content-Length", "100000")
			io.WriteString(w, body[:50_000])
			panic(http.ErrAbortHandler)
		case "missing":
			w.Header().Set(NotFoundUpstream, "1")
			http.NotFound(w, r)
		default: // a 404 of the route, not of upstream
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := mustNew(t, Options{Self: "http://127.0.0.1:1", Peers: []string{srv.URL}})
	resp, err := c.Fetch(context.Background(), srv.URL, "whole")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != body || resp.Size != int64(len(body)) || resp.LastModified.Year() != 2006 {
		t.Errorf("whole: %d bytes, %v, size %d, modified %v", len(b), err, resp.Size, resp.LastModified)
	}
	resp, err = c.Fetch(context.Background(), srv.URL, "cut")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a body cut short read as complete")
	}
	resp.Body.Close()
	if _, err := c.Fetch(context.Background(), srv.URL, "missing"); !errors.Is(err, upstream.ErrNotFound) {
		t.Errorf("missing: %v; want ErrNotFound", err)
	}
	if _, err := c.Fetch(context.Background(), srv.URL, "unknown-repo"); err == nil || errors.Is(err, upstream.ErrNotFound) {
		t.Errorf("a 404 not from upstream: %v; want an error other than ErrNotFound", err)
	}
}

// A peer that stops answering /readyz is out after two checks, and back
// after one good one.
func TestHealth(t *testing.T) {
	var ready = make(chan bool, 1)
	ready <- true
	checked := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := <-ready
		ready <- ok
		if !ok {
			http.Error(w, "shutting down", 503)
		}
		checked <- struct{}{}
	}))
	defer srv.Close()
	c := mustNew(t, Options{Self: "http://127.0.0.1:1", Peers: []string{srv.URL}, Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	waitLive := func(want int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for len(c.Live()) != want {
			select {
			case <-checked:
			case <-deadline:
				t.Fatalf("live = %v; want %d nodes", c.Live(), want)
			}
		}
	}
	<-checked
	waitLive(2)
	<-ready
	ready <- false
	waitLive(1)
	<-ready
	ready <- true
	waitLive(2)
}
