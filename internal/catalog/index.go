package catalog

import (
	"fmt"
	"path"
	"sort"
	stdsync "sync"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
)

// DB is one version of a repo folder's {repo}.db, parsed: a listing of
// extra (8 MB, 15k packages) is parsed once per change, not per request,
// and the same parse serves the API, the UI, the fill's verification and
// pinning.
type DB struct {
	modTime time.Time // the file's, with size: the version this parse is of
	size    int64
	err     error // the parse failed: kept too, so a broken db is read once per version

	Packages []*alpm.Package // sorted by name
	byName   map[string]*alpm.Package
	byFile   map[string]*alpm.Package

	provOnce  stdsync.Once               // builds provIndex, see Provides
	provIndex map[string][]*alpm.Package // provided name -> packages
}

// Package is the package called name, nil if the db has none.
func (d *DB) Package(name string) *alpm.Package { return d.byName[name] }

// File is the package whose file is named file (%FILENAME%), nil if none.
func (d *DB) File(file string) *alpm.Package { return d.byFile[file] }

// Provides maps each name a package provides (version stripped) to the
// packages providing it, built on first use.
func (d *DB) Provides() map[string][]*alpm.Package {
	d.provOnce.Do(func() {
		d.provIndex = map[string][]*alpm.Package{}
		for _, p := range d.Packages {
			for _, prov := range p.Provides {
				n := alpm.DepName(prov)
				d.provIndex[n] = append(d.provIndex[n], p)
			}
		}
	})
	return d.provIndex
}

// DB returns the parse of the tree's {repo}.db at rel, or
// store.ErrNotFound. The file is checked on every call (its mtime and
// size, one open and fstat), so a db replaced by anyone, a hand edit
// included, is parsed again; Committed drops a parse at once.
func (c *Catalog) DB(rel string) (*DB, error) {
	v, err, _ := c.parse.Do(rel, func() (any, error) {
		f, err := c.store.Open(rel)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if v, ok := c.dbs.Load(rel); ok {
			if d := v.(*DB); d.modTime.Equal(info.ModTime()) && d.size == info.Size() {
				return d, nil
			}
		}
		d := &DB{modTime: info.ModTime(), size: info.Size()}
		db, err := alpm.ReadDB(f)
		if err != nil {
			d.err = fmt.Errorf("read %s: %w", rel, err)
			c.log.Warn("cannot read the database; its packages are checked by length only", "file", rel, "err", err)
		} else {
			d.index(db.Packages)
		}
		c.dbs.Store(rel, d)
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	d := v.(*DB)
	if d.err != nil {
		return nil, d.err
	}
	return d, nil
}

func (d *DB) index(pkgs []*alpm.Package) {
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	d.Packages = pkgs
	d.byName = make(map[string]*alpm.Package, len(pkgs))
	d.byFile = make(map[string]*alpm.Package, len(pkgs))
	for _, p := range pkgs {
		d.byName[p.Name] = p
		d.byFile[p.Filename] = p
	}
}

// Committed tells the catalog that rel was written into the tree (by the
// sync's publish, a proxy revalidation, a hosted build): when it is a
// database, its parse is dropped now rather than at the next check, and
// whoever waits on DBChanged wakes.
func (c *Catalog) Committed(rel string) {
	c.dbs.Delete(rel)
	if t, err := c.router.Resolve("/" + rel); err == nil && t.Repo != "" && t.File == t.Repo+".db" {
		next := make(chan struct{})
		close(*c.changed.Swap(&next))
	}
}

// DBChanged returns a channel that is closed when a repo's {repo}.db is
// next committed (Committed). Take it before reading the databases, so
// that a change in between is not missed.
func (c *Catalog) DBChanged() <-chan struct{} { return *c.changed.Load() }

// Expect is what a database says a package file must be.
type Expect struct {
	Size   int64
	SHA256 string // hex; "" when the database has none
}

// Expecting announces the packages of a database about to be published
// in the repo folder dir, as file name -> Expect: a sync downloads them
// before it swaps the db in. Until release is called, Expect answers for
// them from it, so that a file is verified against the same database
// whoever fetches it first (the sync, or a client of the proxy).
func (c *Catalog) Expecting(dir string, files map[string]Expect) (release func()) {
	m := &files
	c.staged.Store(dir, m)
	return func() { c.staged.CompareAndDelete(dir, m) }
}

// Expect returns what rel must be: from the database a sync is about to
// publish in its folder (Expecting), else from the folder's current
// {repo}.db. ok is false when neither names it (a length check is all
// there is) or rel is no package of a configured repo.
func (c *Catalog) Expect(rel string) (Expect, bool) {
	dir, file := path.Split(rel)
	if len(dir) > 0 {
		dir = dir[:len(dir)-1]
	}
	if v, ok := c.staged.Load(dir); ok {
		if e, ok := (*v.(*map[string]Expect))[file]; ok {
			return e, true
		}
	}
	p := c.current(rel)
	if p == nil {
		return Expect{}, false
	}
	return Expect{Size: p.CSize, SHA256: p.SHA256Sum}, true
}

// Pinned reports whether the current database of rel's repo names rel, so
// that eviction keeps it whatever cache.keep_versions says.
func (c *Catalog) Pinned(rel string) bool { return c.current(rel) != nil }

// current is the package the current db of rel's folder names as rel.
// Only package files are named by a db: for a signature or a db nothing
// is read.
func (c *Catalog) current(rel string) *alpm.Package {
	t, err := c.router.Resolve("/" + rel)
	if err != nil || t.Repo == "" || !alpm.IsPackageFile(t.File) {
		return nil
	}
	db, err := c.DB(path.Dir(rel) + "/" + t.Repo + ".db")
	if err != nil {
		return nil // none yet, or unreadable (DB logs that once per version)
	}
	return db.File(t.File)
}
