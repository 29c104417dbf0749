package web

import (
	"bytes"
	"fmt"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/store"
)

// TestIndexSeesChanges: a repo folder's page is kept, yet every change
// of the folder (a file added or removed at once after a render, a new
// db naming other packages) is on the very next request.
func TestIndexSeesChanges(t *testing.T) {
	e := newEnv(t)
	const folder = "archlinux/extra/os/x86_64"
	page := func() string { return e.page("/" + folder + "/") }
	page()
	for i := range 10 {
		name := fmt.Sprintf("new%d-1-1-x86_64.pkg.tar.zst", i)
		if err := e.st.WriteFile(folder+"/"+name, []byte("x"), store.Meta{}); err != nil {
			t.Fatal(err)
		}
		if body := page(); !strings.Contains(body, `">`+name+"</a></td>") {
			t.Fatalf("change %d: the page lacks %s, added just before", i, name)
		}
		if err := e.st.Remove(folder + "/" + name); err != nil {
			t.Fatal(err)
		}
		if body := page(); strings.Contains(body, name) {
			t.Fatalf("change %d: the page still has %s, removed just before", i, name)
		}
	}
	var db bytes.Buffer
	fresh := &alpm.Package{Name: "fresh", Version: "1-1", Arch: "x86_64", Filename: "fresh-1-1-x86_64.pkg.tar.zst", CSize: 10}
	if err := alpm.WriteDB(&db, []*alpm.Package{fresh}, alpm.WriteOptions{ModTime: time.Unix(built, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.WriteFile(folder+"/extra.db", db.Bytes(), store.Meta{LastModified: time.Unix(built+60, 0)}); err != nil {
		t.Fatal(err)
	}
	body := page()
	if !strings.Contains(body, `fresh-1-1-x86_64.pkg.tar.zst</a> <span class="note">not cached</span>`) || strings.Contains(body, "lib000-") {
		t.Errorf("after a new db the page does not list what it names:\n%s", body)
	}
}

// TestIndexCached: a settled folder's page is rendered once per sort
// order, answers If-None-Match with 304, and concurrent first requests
// share one render.
func TestIndexCached(t *testing.T) {
	e := newEnv(t)
	c := e.ui.indexes
	c.skew.Store(int64(2 * time.Second)) // the env's folders are settled
	path := "/archlinux/extra/os/x86_64/"

	const clients = 16
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
	var wg stdsync.WaitGroup
	bodies := make([]string, clients)
	for i := range clients {
		wg.Go(func() { bodies[i] = e.page(path) })
	}
	wg.Wait()
	c.rendering.Store(nil)
	c.joined.Store(nil)
	if c.renders.Load() != 1 || c.shared.Load() != clients-1 {
		t.Errorf("%d concurrent first requests: %d renders, %d shared; want 1, %d", clients, c.renders.Load(), c.shared.Load(), clients-1)
	}
	for i, b := range bodies {
		if b != bodies[0] || !strings.Contains(b, "python-3.13.1-1-x86_64.pkg.tar.zst") {
			t.Errorf("client %d got another page", i)
		}
	}

	code, again, h := e.get(path)
	if code != 200 || again != bodies[0] || c.hits.Load() != 1 || c.renders.Load() != 1 {
		t.Errorf("next request = %d, %d hits, %d renders; want 200 from the cache", code, c.hits.Load(), c.renders.Load())
	}
	etag := h.Get("ETag")
	if code, body, _ := e.get(path, "If-None-Match", etag); etag == "" || code != 304 || body != "" {
		t.Errorf("If-None-Match %q = %d %q, want 304", etag, code, body)
	}
	if h.Get("Content-Security-Policy") == "" || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("cached page headers %v, want the page headers", h)
	}
	e.page(path + "?sort=size&order=desc")
	e.page(path + "?sort=size&order=desc")
	if c.renders.Load() != 2 {
		t.Errorf("another sort order: %d renders, want 2 (one for it, then kept)", c.renders.Load())
	}
}
