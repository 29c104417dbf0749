package sync

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// upRepo is one repo folder of a fake upstream, with the packages its db
// names.
type upRepo struct {
	t    testing.TB
	root string // the upstream's root
	dir  string // the folder, relative to root
	name string
	pkgs map[string]*alpm.Package // by package name
	sigs bool                     // write a .sig beside each package
}

func newUpRepo(t testing.TB, root, dir, name string) *upRepo {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return &upRepo{t: t, root: root, dir: dir, name: name, pkgs: map[string]*alpm.Package{}}
}

// add builds a package of size payload bytes and puts it in the db, in
// place of any other version of the same name.
func (u *upRepo) add(name, version string, size int) string {
	u.t.Helper()
	payload := bytes.Repeat([]byte(name+version+" "), size/(len(name)+len(version)+1)+1)[:size]
	pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: version, Desc: "test package " + name,
		URL: "https://example.org/" + name, BuildDate: 1795824270, Packager: "mirrord tests <test@example.org>",
		ISize: int64(size), Arch: "x86_64", Licenses: []string{"MIT"}}}
	file := fmt.Sprintf("%s-%s-x86_64.pkg.tar.zst", name, version)
	path := filepath.Join(u.root, u.dir, file)
	f, err := os.Create(path)
	if err != nil {
		u.t.Fatal(err)
	}
	if err := alpm.WritePackage(f, pi, []alpm.PackageFile{{Name: "usr/share/" + name + "/data", Body: payload}}, alpm.Zstd); err != nil {
		u.t.Fatal(err)
	}
	f.Close()
	p, err := alpm.ReadPackageFile(path, alpm.ReadOptions{ListFiles: true})
	if err != nil {
		u.t.Fatal(err)
	}
	if u.sigs {
		os.WriteFile(path+".sig", []byte("signature of "+file), 0o644)
	}
	u.pkgs[name] = p
	return file
}

func (u *upRepo) remove(name string) { delete(u.pkgs, name) }

// write writes {name}.db and {name}.files (gzip, as repo-add) and the
// .tar.gz links, and bumps the upstream's lastupdate if base is set.
func (u *upRepo) write() {
	u.t.Helper()
	var pkgs []*alpm.Package
	for _, p := range u.pkgs {
		pkgs = append(pkgs, p)
	}
	for _, kind := range []struct {
		ext   string
		files bool
	}{{".db", false}, {".files", true}} {
		var b bytes.Buffer
		if err := alpm.WriteDB(&b, pkgs, alpm.WriteOptions{Files: kind.files}); err != nil {
			u.t.Fatal(err)
		}
		path := filepath.Join(u.root, u.dir, u.name+kind.ext)
		if err := os.WriteFile(path+".tmp", b.Bytes(), 0o644); err != nil {
			u.t.Fatal(err)
		}
		os.Rename(path+".tmp", path)
		os.Symlink(u.name+kind.ext, path+".tar.gz")
	}
}

// setLastupdate writes the upstream's base lastupdate.
func setLastupdate(t testing.TB, root string, v int64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "lastupdate"), fmt.Appendf(nil, "%d\n", v), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clock is an injectable time.
type clock struct {
	mu stdsync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a store, a fetcher and a scheduler over one config.
type env struct {
	t       testing.TB
	cfg     *config.Config
	dataDir string
	store   *store.Store
	cat     *catalog.Catalog
	fetcher *fetch.Fetcher
	up      *upstream.Client
	sched   *Scheduler
	clock   *clock
	reg     *prometheus.Registry
	bucket  Bucket // shared with other envs: a cluster's nodes; nil: none
}

// mirrorConfig is a config with one distro of mirror repos.
func mirrorConfig(dataDir, distro, layout string, arches []string, upstreams []string, repos ...string) *config.Config {
	d := config.Distro{Layout: layout, Arch: arches, Upstreams: upstreams, Repos: map[string]config.Repo{}}
	for _, r := range repos {
		d.Repos[r] = config.Repo{Mode: config.ModeMirror}
	}
	return &config.Config{DataDir: dataDir, Sync: config.Sync{Concurrency: 4, PruneAfter: time.Hour},
		Distros: map[string]config.Distro{distro: d}}
}

func newEnv(t testing.TB, cfg *config.Config) *env {
	t.Helper()
	e := &env{t: t, cfg: cfg, dataDir: cfg.DataDir, clock: &clock{t: time.Unix(1_800_000_000, 0)}}
	e.open()
	return e
}

// open opens the store and builds the scheduler (again, after close: a
// restart).
func (e *env) open() {
	e.t.Helper()
	var err error
	e.reg = prometheus.NewRegistry()
	if e.store, err = store.Open(e.dataDir, store.Options{}); err != nil {
		e.t.Fatal(err)
	}
	if e.up, err = upstream.NewClient(upstream.Options{Retries: 0, StallTimeout: 2 * time.Second, Cooldown: time.Millisecond}, nil); err != nil {
		e.t.Fatal(err)
	}
	if e.cat, err = catalog.New(e.cfg, e.store, catalog.Options{Upstream: e.up}); err != nil {
		e.t.Fatal(err)
	}
	e.fetcher = fetch.New(e.store, fetch.Options{Catalog: e.cat})
	if e.sched, err = New(e.cat, e.store, Options{Fetcher: e.fetcher, Registerer: e.reg, Now: e.clock.Now, Bucket: e.bucket, Node: e.dataDir}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.close)
}

func (e *env) close() {
	if e.store == nil {
		return
	}
	// Fills run detached: let them end before badger closes.
	e.fetcher.Shutdown(context.Background())
	e.up.Close()
	e.store.Close()
	e.store = nil
}

func (e *env) tree() string { return filepath.Join(e.dataDir, "tree") }

// listFiles maps every file under dir (following links) to its bytes,
// leaving out names skip says.
func listFiles(t testing.TB, dir string, skip func(name string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (skip != nil && skip(d.Name())) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return nil
	})
	return out
}

// sameTree fails unless got and want hold the same files with the same bytes.
func sameTree(t testing.TB, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("tree lacks %s", k)
		} else if g != v {
			t.Errorf("%s differs from upstream (%d bytes, want %d)", k, len(g), len(v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("tree has %s, upstream does not", k)
		}
	}
}

// packageRequests counts upstream GETs of package files and signatures.
func packageRequests(s *faultserver.Server) map[string]int {
	out := map[string]int{}
	for _, e := range s.Log() {
		if isRepoFile(filepath.Base(e.Path)) {
			out[e.Path]++
		}
	}
	return out
}
