package evict

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

const dir = "archlinux/core/os/x86_64" // a proxy repo's folder

// newEvictor is an evictor over a fresh store with a proxy repo core and
// a mirror repo extra.
func newEvictor(t *testing.T, opts Options) (*Evictor, *store.Store) {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{DataDir: data, Distros: map[string]config.Distro{"archlinux": {
		Layout: "$repo/os/$arch", Arch: []string{"x86_64"},
		Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "extra": {Mode: config.ModeMirror}},
	}}}
	cat, err := catalog.New(cfg, st, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return New(st, cat, opts), st
}

func present(st *store.Store, rel string) bool {
	_, err := st.Stat(rel)
	return err == nil
}

func TestEvictLRU(t *testing.T) {
	e, st := newEvictor(t, Options{MaxSize: 25})
	for i := range 4 {
		name := fmt.Sprintf("%s/p%d-1-1-x86_64.pkg.tar.zst", dir, i)
		if err := st.WriteFile(name, make([]byte, 10), store.Meta{FetchedAt: time.Unix(int64(100+i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	st.WriteFile(dir+"/core.db", make([]byte, 100), store.Meta{})                                       // a database: never evicted
	st.WriteFile("archlinux/extra/os/x86_64/q-1-1-x86_64.pkg.tar.zst", make([]byte, 100), store.Meta{}) // a mirror's: never evicted
	st.Touch(dir + "/p0-1-1-x86_64.pkg.tar.zst")                                                        // p0 is now the most recent
	n, err := e.Evict()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("Evict removed %d files, want 2", n)
	}
	for name, want := range map[string]bool{
		dir + "/p0-1-1-x86_64.pkg.tar.zst": true, dir + "/p1-1-1-x86_64.pkg.tar.zst": false,
		dir + "/p2-1-1-x86_64.pkg.tar.zst": false, dir + "/p3-1-1-x86_64.pkg.tar.zst": true,
		dir + "/core.db": true, "archlinux/extra/os/x86_64/q-1-1-x86_64.pkg.tar.zst": true,
	} {
		if got := present(st, name); got != want {
			t.Errorf("after Evict, %s present = %v, want %v", name, got, want)
		}
	}
}

// TestEvictKeepVersions: the newest KeepVersions by vercmp stay, and so
// does the version the current database names (pinned by the catalog).
func TestEvictKeepVersions(t *testing.T) {
	e, st := newEvictor(t, Options{KeepVersions: 2})
	var db bytes.Buffer
	pinned := &alpm.Package{Filename: "foo-1.0-1-x86_64.pkg.tar.zst", Name: "foo", Version: "1.0-1", Arch: "x86_64", CSize: 1}
	if err := alpm.WriteDB(&db, []*alpm.Package{pinned}, alpm.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteFile(dir+"/core.db", db.Bytes(), store.Meta{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"foo-1.0-1-x86_64.pkg.tar.zst", "foo-1.0-1-x86_64.pkg.tar.zst.sig", "foo-1.1-1-x86_64.pkg.tar.zst",
		"foo-1:0.1-1-x86_64.pkg.tar.zst", "foo-1.2-1-x86_64.pkg.tar.zst", "foo-1.2-1-x86_64.pkg.tar.zst.sig",
		"foo-0.9-1-x86_64.pkg.tar.zst", "foo-0.9-1-x86_64.pkg.tar.zst.sig", "bar-1-1-any.pkg.tar.zst",
	} {
		st.WriteFile(dir+"/"+name, []byte("x"), store.Meta{})
	}
	if _, err := e.Evict(); err != nil {
		t.Fatal(err)
	}
	// Newest two by vercmp: 1:0.1-1 (epoch) and 1.2-1; 1.0-1 is pinned.
	for name, want := range map[string]bool{
		"foo-1:0.1-1-x86_64.pkg.tar.zst": true, "foo-1.2-1-x86_64.pkg.tar.zst": true, "foo-1.2-1-x86_64.pkg.tar.zst.sig": true,
		"foo-1.0-1-x86_64.pkg.tar.zst": true, "foo-1.0-1-x86_64.pkg.tar.zst.sig": true,
		"foo-1.1-1-x86_64.pkg.tar.zst": false, "foo-0.9-1-x86_64.pkg.tar.zst": false, "foo-0.9-1-x86_64.pkg.tar.zst.sig": false,
		"bar-1-1-any.pkg.tar.zst": true, "core.db": true,
	} {
		if got := present(st, dir+"/"+name); got != want {
			t.Errorf("after Evict, %s present = %v, want %v", name, got, want)
		}
	}
}
