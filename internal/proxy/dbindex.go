package proxy

import (
	"log/slog"
	"path"
	stdsync "sync"
	"sync/atomic"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/store"
)

// dbIndexes knows, per repo folder, what the cached {repo}.db names, so
// that a fetched package is checked against %CSIZE% and %SHA256SUM%.
// An index is parsed on first use after the db changed, by the fill that
// needs it, never on the request path of a hit.
type dbIndexes struct {
	store *store.Store
	log   *slog.Logger
	m     stdsync.Map // repo folder -> *dbIndex
}

type dbIndex struct {
	once  stdsync.Once
	files atomic.Pointer[map[string]fetch.Expect]
}

func isDB(t Target) bool { return t.File == t.Repo+".db" }

// expect returns what the repo's db says of t.File, if the db is cached
// and names it.
func (d *dbIndexes) expect(t Target) (fetch.Expect, bool) {
	dir := path.Dir(t.Rel)
	v, _ := d.m.LoadOrStore(dir, &dbIndex{})
	idx := v.(*dbIndex)
	idx.once.Do(func() { idx.files.Store(d.load(dir + "/" + t.Repo + ".db")) })
	files := idx.files.Load()
	if files == nil {
		return fetch.Expect{}, false
	}
	e, ok := (*files)[t.File]
	return e, ok
}

// invalidate drops the index of t's folder after its db changed.
func (d *dbIndexes) invalidate(t Target) { d.m.Delete(path.Dir(t.Rel)) }

// Invalidate tells the proxy that a file in the tree was replaced behind
// its back (the mirror sync published a new db): what it knows of that
// folder's database is dropped and read again on next use.
func (h *Handler) Invalidate(rel string) { h.dbs.m.Delete(path.Dir(rel)) }

func (d *dbIndexes) load(rel string) *map[string]fetch.Expect {
	f, err := d.store.Open(rel)
	if err != nil {
		return nil
	}
	defer f.Close()
	db, err := alpm.ReadDB(f)
	if err != nil {
		d.log.Warn("cannot read cached database; packages are checked by length only", "file", rel, "err", err)
		return nil
	}
	files := make(map[string]fetch.Expect, len(db.Packages))
	for _, p := range db.Packages {
		files[p.Filename] = fetch.Expect{Size: p.CSize, SHA256: p.SHA256Sum}
	}
	return &files
}

// Pinned reports whether the current database of rel's repo names rel, so
// that eviction keeps it whatever cache.keep_versions says.
func (h *Handler) Pinned(rel string) bool {
	t, err := h.router.Resolve("/" + rel)
	if err != nil {
		return false
	}
	_, ok := h.dbs.expect(t)
	return ok
}
