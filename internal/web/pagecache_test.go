package web

import (
	"bytes"
	"fmt"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// settled is a version older than any tick.
var settled = folderVersion{ino: 1, size: 4096, mtime: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC).UnixNano(), ctime: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC).UnixNano()}

func counting(body string, n *atomic.Int64) func() ([]byte, error) {
	return func() ([]byte, error) {
		n.Add(1)
		return []byte(body), nil
	}
}

// TestPageCacheRendersOnce: requests that come while a page renders wait
// for that render (the render is held until all have joined), and the
// next request is served from the cache.
func TestPageCacheRendersOnce(t *testing.T) {
	c := newPageCache(1 << 20)
	const clients = 20
	gate := make(chan struct{})
	var joined atomic.Int64
	onJoin := func() {
		if joined.Add(1) == clients-1 {
			close(gate)
		}
	}
	onRender := func() { <-gate }
	c.joined.Store(&onJoin)
	c.rendering.Store(&onRender)
	var rendered atomic.Int64
	key := pageKey{rel: "a/b", sort: "name"}
	var wg stdsync.WaitGroup
	bodies := make([][]byte, clients)
	etags := make([]string, clients)
	for i := range clients {
		wg.Go(func() {
			var err error
			bodies[i], etags[i], err = c.get(key, settled, c.now(), counting("page", &rendered))
			if err != nil {
				t.Errorf("get = %v", err)
			}
		})
	}
	wg.Wait()
	if rendered.Load() != 1 || c.renders.Load() != 1 || c.shared.Load() != clients-1 {
		t.Errorf("%d clients: %d renders (counted %d), %d shared; want 1 and %d", clients, rendered.Load(), c.renders.Load(), c.shared.Load(), clients-1)
	}
	for i := range clients {
		if string(bodies[i]) != "page" || etags[i] != etags[0] || etags[0] == "" {
			t.Errorf("client %d got %q etag %q, want page with client 0's etag %q", i, bodies[i], etags[i], etags[0])
		}
	}
	c.rendering.Store(nil)
	if body, _, _ := c.get(key, settled, c.now(), counting("again", &rendered)); string(body) != "page" || c.hits.Load() != 1 {
		t.Errorf("after the render: %q with %d hits, want the kept page, a hit", body, c.hits.Load())
	}
}

// TestPageCacheUnsettled: a version whose times are within a tick of the
// listing may hide a change: its page is not kept, and it is shared only
// with requests that arrived before the listing began.
func TestPageCacheUnsettled(t *testing.T) {
	c := newPageCache(1 << 20)
	now := c.now()
	fresh := folderVersion{ino: 1, mtime: now.UnixNano() - 1, ctime: now.UnixNano() - 1}
	key := pageKey{rel: "a", sort: "name"}
	var rendered atomic.Int64

	gate, started := make(chan struct{}), make(chan time.Time, 1)
	var first atomic.Bool
	onRender := func() {
		if first.CompareAndSwap(false, true) { // hold the leader's render only
			c.mu.Lock()
			started <- c.flights[key].started
			c.mu.Unlock()
			<-gate
		}
	}
	c.rendering.Store(&onRender)
	done := make(chan string)
	go func() {
		body, etag, _ := c.get(key, fresh, now, counting("first", &rendered))
		done <- string(body) + etag
	}()
	at := <-started
	// Arrived before the listing began: joins it.
	joined := make(chan struct{})
	onJoin := func() { close(joined) }
	c.joined.Store(&onJoin)
	go func() {
		body, _, _ := c.get(key, fresh, at.Add(-time.Nanosecond), counting("never", &rendered))
		done <- string(body)
	}()
	<-joined
	c.joined.Store(nil)
	// Arrived after: lists the folder itself.
	if body, etag, _ := c.get(key, fresh, at.Add(time.Nanosecond), counting("second", &rendered)); string(body) != "second" || etag != "" {
		t.Errorf("request after the listing began got %q etag %q, want its own render, no etag", body, etag)
	}
	close(gate)
	for range 2 {
		if got := <-done; got != "first" {
			t.Errorf("leader or early waiter got %q, want first with no etag", got)
		}
	}
	if body, _, _ := c.get(key, fresh, c.now(), counting("third", &rendered)); string(body) != "third" {
		t.Errorf("next request got %q, want a render: an unsettled page is not kept", body)
	}
	if rendered.Load() != 3 || c.hits.Load() != 0 {
		t.Errorf("%d renders, %d hits; want 3, 0", rendered.Load(), c.hits.Load())
	}
	// Once the version is settled, its page is kept.
	c.skew.Store(int64(2 * time.Second))
	c.get(key, fresh, c.now(), counting("kept", &rendered))
	if body, _, _ := c.get(key, fresh, c.now(), counting("not kept", &rendered)); string(body) != "kept" {
		t.Errorf("settled version: %q, want the kept page", body)
	}
}

func TestSettled(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 500_000_000, time.UTC)
	cases := []struct {
		name  string
		times time.Time
		want  bool
	}{
		{"nanoseconds, a tick before", at.Add(-tick - time.Nanosecond), true},
		{"nanoseconds, within the tick", at.Add(-tick + time.Millisecond), false},
		{"whole seconds, two seconds before", at.Truncate(time.Second).Add(-time.Second), true},
		{"whole seconds, the same second", at.Truncate(time.Second), false},
		{"after", at.Add(time.Millisecond), false},
	}
	for _, c := range cases {
		v := folderVersion{mtime: c.times.UnixNano(), ctime: c.times.UnixNano()}
		if got := v.settledBefore(at); got != c.want {
			t.Errorf("%s: settledBefore = %v, want %v", c.name, got, c.want)
		}
	}
	// ctime counts too: a utime(2) may set mtime back.
	v := folderVersion{mtime: at.Add(-time.Hour).UnixNano(), ctime: at.UnixNano()}
	if v.settledBefore(at) {
		t.Error("an old mtime with a new ctime is settled, want not")
	}
}

// TestPageCacheVersionsAndBound: a new version renders again and replaces
// the old page; the pages kept never exceed the bound, the least recently
// used go first, and a page over a quarter of it is not kept.
func TestPageCacheVersionsAndBound(t *testing.T) {
	c := newPageCache(1000)
	var rendered atomic.Int64
	key := pageKey{rel: "r", sort: "name"}
	c.get(key, settled, c.now(), counting(strings.Repeat("a", 200), &rendered))
	v2 := settled
	v2.mtime++
	if body, _, _ := c.get(key, v2, c.now(), counting(strings.Repeat("b", 200), &rendered)); body[0] != 'b' || c.used != 200 || len(c.pages) != 1 {
		t.Errorf("new version: %q..., %d bytes in %d pages; want b, 200 in 1", body[:1], c.used, len(c.pages))
	}
	for i := range 10 {
		c.get(pageKey{rel: fmt.Sprint(i)}, settled, c.now(), counting(strings.Repeat("x", 200), &rendered))
		c.get(key, v2, c.now(), nil) // keep key recently used
		if c.used > c.max {
			t.Fatalf("%d bytes kept, over %d", c.used, c.max)
		}
	}
	if _, ok := c.pages[pageKey{rel: "0"}]; ok {
		t.Error("the least recently used page is still kept")
	}
	if _, ok := c.pages[key]; !ok {
		t.Error("a recently used page was evicted")
	}
	c.get(pageKey{rel: "big"}, settled, c.now(), counting(strings.Repeat("y", 251), &rendered))
	if _, ok := c.pages[pageKey{rel: "big"}]; ok {
		t.Error("a page over a quarter of the bound is kept")
	}
}

// TestPageCachePanic: a panic in a render reaches the leader as a panic
// and the waiters as an error, and the next request renders again.
func TestPageCachePanic(t *testing.T) {
	c := newPageCache(1 << 20)
	key := pageKey{rel: "p"}
	gate, registered := make(chan struct{}), make(chan struct{})
	onRender := func() { close(registered); <-gate }
	joined := make(chan struct{})
	onJoin := func() { close(joined) }
	c.rendering.Store(&onRender)
	c.joined.Store(&onJoin)
	panicked := make(chan any)
	go func() {
		defer func() { panicked <- recover() }()
		c.get(key, settled, c.now(), func() ([]byte, error) { panic("boom") })
	}()
	waited := make(chan error)
	go func() {
		<-registered
		_, _, err := c.get(key, settled, c.now(), nil)
		waited <- err
	}()
	<-joined
	close(gate)
	if v := <-panicked; v != "boom" {
		t.Errorf("leader recovered %v, want boom", v)
	}
	if err := <-waited; err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("waiter got %v, want the panic as an error", err)
	}
	c.rendering.Store(nil)
	if body, _, err := c.get(key, settled, c.now(), func() ([]byte, error) { return []byte("ok"), nil }); err != nil || !bytes.Equal(body, []byte("ok")) {
		t.Errorf("after the panic: %q, %v; want a new render", body, err)
	}
}
