package hosted

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// testConfig has one hosted repo "local" on two arches, a mirror repo
// "core", and tunables small enough for tests.
func testConfig() *config.Config {
	return &config.Config{
		Hosted: config.Hosted{Workers: 4, Debounce: 20 * time.Millisecond, MaxDelay: time.Second, MaxUpload: 1 << 20, Retention: 0},
		Distros: map[string]config.Distro{"archlinux": {
			Layout: "$repo/os/$arch", Arch: []string{"x86_64", "aarch64"},
			Repos: map[string]config.Repo{"local": {Mode: config.ModeHosted}, "core": {Mode: config.ModeMirror}},
		}},
	}
}

// env is a Service on a store in a temp dir, running until the test ends
// (or stop is called).
type env struct {
	t    testing.TB
	dir  string
	cfg  *config.Config
	st   *store.Store
	svc  *Service
	reg  *prometheus.Registry
	stop func()
}

func newEnv(t testing.TB, dir string, cfg *config.Config, run bool) *env {
	t.Helper()
	return newEnvOpts(t, dir, cfg, run, Options{})
}

// newEnvOpts is newEnv with opts (but its Registerer, which the env
// makes).
func newEnvOpts(t testing.TB, dir string, cfg *config.Config, run bool, opts Options) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	cat := testCatalog(t, cfg, st)
	// With a bucket, a Checker over the same tree checks the jobs, as on
	// a node of a cluster; poked as cmd/mirrord pokes it.
	var checker *Checker
	var svcp atomic.Pointer[Service]
	if opts.Bucket != nil && run {
		copts := opts
		copts.Registerer = prometheus.NewRegistry()
		copts.Checked = func() {
			if s := svcp.Load(); s != nil {
				s.Checked()
			}
		}
		if opts.checkerBucket != nil {
			copts.Bucket = opts.checkerBucket
		}
		c, err := NewChecker(cat, st, "node-"+filepath.Base(dir), copts)
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		checker = c
		opts.Queued = c.Poke
	}
	svc, err := New(cat, st, opts)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	svcp.Store(svc)
	e := &env{t: t, dir: dir, cfg: cfg, st: st, svc: svc, reg: reg, stop: func() { st.Close() }}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { svc.Run(ctx); close(done) }()
		checked := make(chan struct{})
		go func() {
			if checker != nil {
				checker.Run(ctx)
			}
			close(checked)
		}()
		e.stop = stdsync.OnceFunc(func() { cancel(); <-done; <-checked; st.Close() })
	} else {
		e.stop = stdsync.OnceFunc(func() { st.Close() })
	}
	t.Cleanup(e.stop)
	return e
}

// pkg builds a package archive in memory.
func pkg(t testing.TB, name, version, arch string) []byte {
	t.Helper()
	pi := &alpm.PKGINFO{Package: alpm.Package{
		Name: name, Base: name, Version: version, Desc: "test package " + name, Arch: arch,
		URL: "https://example.org", BuildDate: 1795824270, Packager: "tests <t@example.org>", ISize: 12, Licenses: []string{"MIT"},
	}}
	var b bytes.Buffer
	files := []alpm.PackageFile{{Name: "usr/share/" + name + "/" + version, Body: []byte("hello world\n")}}
	if err := alpm.WritePackage(&b, pi, files, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// submit stages data and submits it; it returns the job or the error of
// the first step that failed.
func (e *env) submit(repo string, data []byte, sig []byte, force bool) (Job, error) {
	u, err := e.svc.NewUpload("archlinux", repo)
	if err != nil {
		return Job{}, err
	}
	defer u.Abort()
	if err := u.ReadPackage("upload.pkg.tar.zst", bytes.NewReader(data)); err != nil {
		return Job{}, err
	}
	if sig != nil {
		if err := u.ReadSig(bytes.NewReader(sig)); err != nil {
			return Job{}, err
		}
	}
	return u.Submit(force)
}

func (e *env) wait(id string) Job {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := e.svc.WaitJob(ctx, id)
	if err != nil {
		e.t.Fatalf("WaitJob(%s) = %v", id, err)
	}
	return j
}

// finished waits until the job's worker is done with it, whether its
// package is in the served databases yet or not.
func (e *env) finished(id string) Job {
	e.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		ch := e.svc.changed()
		j, err := e.svc.Job(id)
		if err != nil {
			e.t.Fatalf("Job(%s) = %v", id, err)
		}
		if j.Finished() {
			return j
		}
		select {
		case <-ch:
		case <-timeout:
			e.t.Fatalf("job %s not finished within 30s: %+v", id, j)
		}
	}
}

func (e *env) idle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.svc.WaitIdle(ctx); err != nil {
		e.t.Fatalf("WaitIdle: %v", err)
	}
}

// db reads a db of the tree by its link name ({repo}.db or {repo}.files).
func (e *env) db(arch, file string) map[string]*alpm.Package {
	e.t.Helper()
	f, err := e.st.Open("archlinux/local/os/" + arch + "/" + file)
	if err != nil {
		e.t.Fatalf("open %s/%s: %v", arch, file, err)
	}
	defer f.Close()
	db, err := alpm.ReadDB(f)
	if err != nil {
		e.t.Fatalf("read %s/%s: %v", arch, file, err)
	}
	out := map[string]*alpm.Package{}
	for _, p := range db.Packages {
		if out[p.Name] != nil {
			e.t.Errorf("%s/%s lists %s twice", arch, file, p.Name)
		}
		out[p.Name] = p
	}
	return out
}

func (e *env) exists(arch, file string) bool {
	_, err := os.Stat(filepath.Join(e.dir, "tree/archlinux/local/os", arch, file))
	return err == nil
}

func TestPublishConcurrent(t *testing.T) {
	e := newEnv(t, "", testConfig(), true)
	const n, clients = 300, 16
	pkgs := make([][]byte, n)
	for i := range pkgs {
		pkgs[i] = pkg(t, fmt.Sprintf("p%03d", i), "1.0-1", "x86_64")
	}
	var wg stdsync.WaitGroup
	ids := make([]string, n)
	errs := make(chan error, n)
	for c := range clients {
		wg.Go(func() {
			for i := c; i < n; i += clients {
				j, err := e.submit("local", pkgs[i], nil, false)
				if err != nil {
					errs <- err
					return
				}
				ids[i] = j.ID
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		if j := e.wait(id); j.Status != Done {
			t.Errorf("job %s = %s %s, want done", id, j.Status, j.Error)
		}
	}
	e.idle()
	db, files := e.db("x86_64", "local.db"), e.db("x86_64", "local.files")
	if len(db) != n || len(files) != n {
		t.Errorf("db has %d packages, files db %d, want %d", len(db), len(files), n)
	}
	for i := range n {
		name := fmt.Sprintf("p%03d", i)
		p := db[name]
		if p == nil {
			t.Errorf("%s missing from the db", name)
			continue
		}
		if !e.exists("x86_64", p.Filename) {
			t.Errorf("%s missing from the tree", p.Filename)
		}
		if f := files[name]; f == nil || !slices.Contains(f.Files, "usr/share/"+name+"/1.0-1") {
			t.Errorf("files db entry of %s = %v", name, f)
		}
	}
	if got := len(e.db("aarch64", "local.db")); got != 0 {
		t.Errorf("aarch64 db has %d packages, want 0", got)
	}
	rebuilds := testutil.ToFloat64(e.svc.metrics.rebuilds.WithLabelValues("archlinux/local"))
	t.Logf("%d uploads from %d clients: %v db rebuilds (both arches, including the initial empty ones)", n, clients, rebuilds)
	if rebuilds > n/10 {
		t.Errorf("%v rebuilds for %d uploads, want far fewer", rebuilds, n)
	}
	if got := testutil.ToFloat64(e.svc.metrics.jobs.WithLabelValues(ResultDone)); got != n {
		t.Errorf("jobs done = %v, want %d", got, n)
	}
	if left, _ := os.ReadDir(filepath.Join(e.dir, "staging")); len(left) != 0 {
		t.Errorf("staging holds %d files after every job is done", len(left))
	}
}

func TestSameNameConcurrently(t *testing.T) {
	e := newEnv(t, "", testConfig(), true)
	versions := []string{"1.0-1", "1.1-1", "2.0-1", "1.5-1", "1:0.1-1", "10.0-1", "9.9-1", "1:0.0.9-2"}
	var wg stdsync.WaitGroup
	jobs := make([]string, len(versions))
	for i, v := range versions {
		data := pkg(t, "same", v, "x86_64")
		wg.Go(func() {
			j, err := e.submit("local", data, nil, false)
			if err != nil {
				t.Error(err)
				return
			}
			jobs[i] = j.ID
		})
	}
	wg.Wait()
	for _, id := range jobs {
		if j := e.wait(id); j.Status == Failed && j.Result != ResultRefused {
			t.Errorf("job %s: %s %s, want done or refused", id, j.Result, j.Error)
		}
	}
	e.idle()
	db := e.db("x86_64", "local.db")
	if len(db) != 1 || db["same"] == nil || db["same"].Version != "1:0.1-1" {
		t.Fatalf("db = %v, want only same 1:0.1-1", db)
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "tree/archlinux/local/os/x86_64"))
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), "same-") && d.Name() != "same-1:0.1-1-x86_64.pkg.tar.zst" {
			t.Errorf("replaced %s still in the tree with retention 0", d.Name())
		}
	}
}

func TestRefusals(t *testing.T) {
	noPKGINFO := func() []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "usr/x", Mode: 0o644, Size: 2})
		tw.Write([]byte("x\n"))
		tw.Close()
		return b.Bytes()
	}()
	withPKGINFO := func(pkginfo string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pkginfo))})
		tw.Write([]byte(pkginfo))
		tw.Close()
		return b.Bytes()
	}
	zstdOnly := pkg(t, "trunc", "1-1", "x86_64")
	withFiles := func(name, version string, files int, payload []byte) []byte {
		pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: version, Arch: "x86_64"}}
		var list []alpm.PackageFile
		for i := range files {
			list = append(list, alpm.PackageFile{Name: fmt.Sprintf("usr/share/%s/%d", name, i), Body: payload})
		}
		var b bytes.Buffer
		if err := alpm.WritePackage(&b, pi, list, alpm.Zstd); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	// An older version whose payload is corrupt: the version check comes
	// first, so the refusal says "not newer", not "corrupt".
	noise := make([]byte, 512<<10)
	rng := rand.New(rand.NewPCG(14, 14))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	olderCorrupt := withFiles("have", "1.0-1", 1, noise)
	for i := len(olderCorrupt) / 2; i < len(olderCorrupt)/2+512; i++ {
		olderCorrupt[i] ^= 0x55
	}
	cases := []struct {
		name   string
		data   []byte
		sig    []byte
		submit error  // from staging
		result string // of the job
		want   string // in the job's error
	}{
		{name: "not an archive", data: []byte("hello, this is not a package at all"), submit: ErrInvalid},
		{name: "empty", data: nil, submit: ErrInvalid},
		{name: "too large", data: append([]byte{0x28, 0xb5, 0x2f, 0xfd}, make([]byte, 2<<20)...), submit: ErrTooLarge},
		{name: "no PKGINFO", data: noPKGINFO, result: ResultInvalid, want: ".PKGINFO"},
		{name: "pkgname with a slash", data: withPKGINFO("pkgname = a/b\npkgver = 1-1\narch = any\n"), result: ResultInvalid, want: "a/b"},
		{name: "pkgname with dotdot", data: withPKGINFO("pkgname = ..\npkgver = 1-1\narch = any\n"), result: ResultInvalid, want: `package name ".."`},
		{name: "pkgver with a slash", data: withPKGINFO("pkgname = ok\npkgver = 1/2-1\narch = any\n"), result: ResultInvalid, want: "1/2"},
		{name: "pkgver no URL serves", data: withPKGINFO("pkgname = ok\npkgver = 1!%3F-1\narch = any\n"), result: ResultInvalid, want: "no mirror URL serves"},
		{name: "arch with a slash", data: withPKGINFO("pkgname = ok\npkgver = 1-1\narch = ../x86_64\n"), result: ResultInvalid, want: "arch"},
		{name: "truncated archive", data: zstdOnly[:len(zstdOnly)/2], result: ResultInvalid},
		{name: "arch not served", data: pkg(t, "arm", "1-1", "armv7h"), result: ResultInvalid, want: "armv7h"},
		{name: "armored signature", data: pkg(t, "sig", "1-1", "any"), sig: []byte("-----BEGIN PGP SIGNATURE-----\n"), result: ResultInvalid},
		{name: "older version", data: pkg(t, "have", "1.0-1", "x86_64"), result: ResultRefused, want: "not newer"},
		{name: "same version", data: pkg(t, "have", "2.0-1", "x86_64"), result: ResultRefused, want: "not newer"},
		{name: "older version, corrupt payload", data: olderCorrupt, result: ResultRefused, want: "not newer"},
		// 10 files and usr/, usr/share/, usr/share/many/: 13 entries.
		{name: "too many files", data: withFiles("many", "1-1", 10, nil), result: ResultInvalid, want: "more than 12 files (hosted.max_files_per_package is 12)"},
	}
	cfg := testConfig()
	cfg.Hosted.MaxFilesPerPackage = 12
	e := newEnv(t, "", cfg, true)
	j, err := e.submit("local", pkg(t, "have", "2.0-1", "x86_64"), nil, false)
	if err != nil || e.wait(j.ID).Status != Done {
		t.Fatalf("publish have 2.0-1: %v %+v", err, e.wait(j.ID))
	}
	e.idle()
	before, _ := os.ReadFile(filepath.Join(e.dir, "tree/archlinux/local/os/x86_64/local.db.tar.gz"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, err := e.submit("local", c.data, c.sig, false)
			if c.submit != nil {
				if !errors.Is(err, c.submit) {
					t.Fatalf("submit = %v, want %v", err, c.submit)
				}
				return
			}
			if err != nil {
				t.Fatalf("submit = %v", err)
			}
			j = e.wait(j.ID)
			if j.Status != Failed || j.Result != c.result || !strings.Contains(j.Error, c.want) {
				t.Errorf("job = %s %s %q, want failed %s containing %q", j.Status, j.Result, j.Error, c.result, c.want)
			}
		})
	}
	if _, err := e.svc.NewUpload("archlinux", "core"); !errors.Is(err, ErrNotFound) {
		t.Errorf("NewUpload(core) = %v, want ErrNotFound (a mirror repo)", err)
	}
	e.idle()
	after, _ := os.ReadFile(filepath.Join(e.dir, "tree/archlinux/local/os/x86_64/local.db.tar.gz"))
	if !bytes.Equal(before, after) {
		t.Error("refused uploads changed the db")
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "tree/archlinux/local/os/x86_64"))
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	want := []string{"have-2.0-1-x86_64.pkg.tar.zst", "local.db", "local.db.tar.gz", "local.files", "local.files.tar.gz"}
	if !slices.Equal(names, want) {
		t.Errorf("tree = %v, want %v", names, want)
	}
	if left, _ := os.ReadDir(filepath.Join(e.dir, "staging")); len(left) != 0 {
		t.Errorf("staging holds %d files after refusals", len(left))
	}

	// force skips the version check, and then the whole archive is read.
	j, _ = e.submit("local", olderCorrupt, nil, true)
	if j = e.wait(j.ID); j.Status != Failed || j.Result != ResultInvalid {
		t.Errorf("forced older corrupt publish = %s %s %q, want failed invalid", j.Status, j.Result, j.Error)
	}
	// 12 files fit (usr/share/ and usr/share/many/ are listed too).
	j, _ = e.submit("local", withFiles("many", "1-1", 9, nil), nil, false)
	if j = e.wait(j.ID); j.Status != Done {
		t.Errorf("publish of 12 files = %s %s", j.Status, j.Error)
	}
	// force replaces even with an older version.
	j, _ = e.submit("local", pkg(t, "have", "1.0-1", "x86_64"), nil, true)
	if j = e.wait(j.ID); j.Status != Done {
		t.Errorf("forced older publish = %s %s", j.Status, j.Error)
	}
	e.idle()
	if v := e.db("x86_64", "local.db")["have"].Version; v != "1.0-1" {
		t.Errorf("after force, have = %s, want 1.0-1", v)
	}
}

func TestAnyAndDelete(t *testing.T) {
	e := newEnv(t, "", testConfig(), true)
	_, signer, _ := testKey(t, t.TempDir(), "uploader")
	data := pkg(t, "noarch", "1-1", "any")
	j, err := e.submit("local", data, sign(t, signer, data), false)
	if err != nil {
		t.Fatal(err)
	}
	if j = e.wait(j.ID); j.Status != Done {
		t.Fatalf("job = %+v", j)
	}
	j, _ = e.submit("local", pkg(t, "native", "1-1", "aarch64"), nil, false)
	e.wait(j.ID)
	e.idle()
	for _, a := range []string{"x86_64", "aarch64"} {
		p := e.db(a, "local.db")["noarch"]
		if p == nil || p.PGPSig == "" {
			t.Errorf("%s db: noarch = %+v, want it with a %%PGPSIG%%", a, p)
		}
		if !e.exists(a, "noarch-1-1-any.pkg.tar.zst") || !e.exists(a, "noarch-1-1-any.pkg.tar.zst.sig") {
			t.Errorf("%s: noarch file or sig missing", a)
		}
	}
	if e.db("x86_64", "local.db")["native"] != nil {
		t.Error("an aarch64 package is in the x86_64 db")
	}

	if err := e.svc.Delete(t.Context(), "archlinux", "local", "x86_64", "native"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(x86_64 native) = %v, want ErrNotFound", err)
	}
	if err := e.svc.Delete(t.Context(), "archlinux", "local", "x86_64", "noarch"); err != nil {
		t.Fatal(err)
	}
	e.idle()
	for _, a := range []string{"x86_64", "aarch64"} {
		if p := e.db(a, "local.db")["noarch"]; p != nil {
			t.Errorf("%s db still lists noarch after delete", a)
		}
		if e.exists(a, "noarch-1-1-any.pkg.tar.zst") || e.exists(a, "noarch-1-1-any.pkg.tar.zst.sig") {
			t.Errorf("%s: deleted noarch still in the tree with retention 0", a)
		}
	}
	if got := testutil.ToFloat64(e.svc.metrics.packages.WithLabelValues("archlinux/local", "aarch64")); got != 1 {
		t.Errorf("mirrord_hosted_packages{aarch64} = %v, want 1", got)
	}
}

func TestRetention(t *testing.T) {
	cfg := testConfig()
	cfg.Hosted.Retention = time.Hour
	e := newEnv(t, "", cfg, true)
	for _, v := range []string{"1-1", "2-1"} {
		j, _ := e.submit("local", pkg(t, "kept", v, "x86_64"), nil, false)
		e.wait(j.ID)
	}
	e.idle()
	if !e.exists("x86_64", "kept-1-1-x86_64.pkg.tar.zst") {
		t.Error("the replaced file is gone before hosted.retention")
	}
	// The deadline is recorded: a restart with a past deadline removes it.
	e.stop()
	cfg.Hosted.Retention = 0
	e2 := newEnv(t, e.dir, cfg, false)
	r := e2.svc.repos["archlinux/local"]
	if _, ok := r.retired["x86_64"]["kept-1-1-x86_64.pkg.tar.zst"]; !ok {
		t.Fatal("the retired file was not reloaded")
	}
	r.retired["x86_64"]["kept-1-1-x86_64.pkg.tar.zst"] = time.Now().Add(-time.Second)
	r.sweep()
	if e2.exists("x86_64", "kept-1-1-x86_64.pkg.tar.zst") || !e2.exists("x86_64", "kept-2-1-x86_64.pkg.tar.zst") {
		t.Error("sweep after the deadline: want 1-1 removed, 2-1 kept")
	}
}

// TestRestart: jobs acknowledged but not run (the process died) complete
// after a restart; staged files of uploads never acknowledged are removed.
func TestRestart(t *testing.T) {
	cfg := testConfig()
	e := newEnv(t, "", cfg, false) // no workers: the jobs stay queued
	var ids []string
	for i := range 5 {
		j, err := e.submit("local", pkg(t, fmt.Sprintf("r%d", i), "1-1", "x86_64"), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	orphan := filepath.Join(e.dir, "staging", newJobID(time.Now())+".pkg")
	os.WriteFile(orphan, []byte("half an upload"), 0o644)
	e.stop()

	e2 := newEnv(t, e.dir, cfg, true)
	for _, id := range ids {
		if j := e2.wait(id); j.Status != Done {
			t.Errorf("job %s after restart = %s %s", id, j.Status, j.Error)
		}
	}
	e2.idle()
	if n := len(e2.db("x86_64", "local.db")); n != 5 {
		t.Errorf("db after restart has %d packages, want 5", n)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("staged file of an unacknowledged upload survived the restart")
	}
}

// TestRerunJob: a job run again after a crash that came after its commit
// (index written, job not yet marked done) succeeds instead of being
// refused as "not newer" than itself.
func TestRerunJob(t *testing.T) {
	e := newEnv(t, "", testConfig(), false)
	j, err := e.submit("local", pkg(t, "twice", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	j = <-e.svc.queue
	// Publish without recording the end: what a crash after commit leaves.
	r := e.svc.repos["archlinux/local"]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	if _, err := e.svc.publish(r, &j); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.publish(r, &j); err != nil {
		t.Errorf("second run of the same job = %v, want success", err)
	}
	j2, _ := e.submit("local", pkg(t, "twice", "1-1", "x86_64"), nil, false)
	j2 = <-e.svc.queue
	if _, err := e.svc.publish(r, &j2); !errors.Is(err, ErrOlderVersion) {
		t.Errorf("another job with the same version = %v, want ErrOlderVersion", err)
	}
	cancel()
	<-done
}

func TestDBTimeMonotonic(t *testing.T) {
	e := newEnv(t, "", testConfig(), true)
	e.idle()
	rel := "archlinux/local/os/x86_64/local.db.tar.gz"
	first, err := e.st.Stat(rel)
	if err != nil {
		t.Fatal(err)
	}
	r := e.svc.repos["archlinux/local"]
	if err := e.svc.build(r.key, r.dirs["x86_64"], "local", nil, nil); err != nil {
		t.Fatal(err)
	}
	second, _ := e.st.Stat(rel)
	if !second.LastModified.After(first.LastModified) {
		t.Errorf("rebuilt db Last-Modified %v, not after %v", second.LastModified, first.LastModified)
	}
}

// TestStopBuilds: a clean stop builds what is dirty, whatever the debounce.
func TestStopBuilds(t *testing.T) {
	cfg := testConfig()
	cfg.Hosted.Debounce, cfg.Hosted.MaxDelay = time.Hour, time.Hour
	e := newEnv(t, "", cfg, true)
	e.idle() // the first, empty dbs
	j, err := e.submit("local", pkg(t, "late", "1-1", "any"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j = e.finished(j.ID); j.Status != Done || j.PublishedAt != nil {
		t.Fatalf("job = %+v, want done and not published", j)
	}
	if len(e.db("x86_64", "local.db")) != 0 {
		t.Fatal("db rebuilt before the debounce")
	}
	e.stop()
	st, err := store.Open(e.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e.st = st
	if j := jobIn(t, st, j.ID); j.PublishedAt == nil {
		t.Errorf("job after the final build = %+v, want published", j)
	}
	for _, a := range []string{"x86_64", "aarch64"} {
		if e.db(a, "local.db")["late"] == nil {
			t.Errorf("%s db lacks the package published before the stop", a)
		}
		if _, err := st.Get(dirtyKey("archlinux/local", a)); err == nil {
			t.Errorf("%s still marked dirty after the final build", a)
		}
	}
}

// A hosted repo new to the config has its empty databases as soon as New
// returns, before Run: the daemon serves after New, and pacman's first
// -Sy must not meet a 404.
func TestNewBuildsMissingDatabases(t *testing.T) {
	e := newEnv(t, "", testConfig(), false)
	for _, arch := range []string{"x86_64", "aarch64"} {
		for _, name := range []string{"local.db", "local.files"} {
			rel := "archlinux/local/os/" + arch + "/" + name
			if _, err := e.st.Stat(rel); err != nil {
				t.Errorf("%s after New: %v", rel, err)
			}
		}
	}
}

// testCatalog is the catalog of cfg over st, without upstream mirrors.
func testCatalog(tb testing.TB, cfg *config.Config, st *store.Store) *catalog.Catalog {
	tb.Helper()
	cat, err := catalog.New(cfg, st, catalog.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return cat
}

// jobIn reads a job record straight from a store.
func jobIn(t *testing.T, st *store.Store, id string) Job {
	t.Helper()
	val, err := st.Get(jobPrefix + id)
	if err != nil {
		t.Fatal(err)
	}
	var j Job
	if err := json.Unmarshal(val, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestWaitJobMeansServed: when WaitJob returns a job done, the databases
// in the tree already list its package (what publish --wait promises),
// however long the debounce.
func TestWaitJobMeansServed(t *testing.T) {
	cfg := testConfig()
	cfg.Hosted.Debounce, cfg.Hosted.MaxDelay = 300*time.Millisecond, 5*time.Second
	e := newEnv(t, "", cfg, true)
	e.idle()
	var ids []string
	for i := range 12 {
		arch := "x86_64"
		if i%3 == 0 {
			arch = "any"
		}
		j, err := e.submit("local", pkg(t, fmt.Sprintf("w%02d", i), "1-1", arch), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		j := e.wait(id)
		if j.Status != Done || j.PublishedAt == nil || j.PublishedAt.Before(j.Created) {
			t.Fatalf("WaitJob = %+v, want done and published after it was created", j)
		}
		for _, a := range j.Package.Arches {
			if p := e.db(a, "local.db")[j.Package.Name]; p == nil || p.Filename != j.Package.Filename {
				t.Errorf("%s/local.db when WaitJob returned job %s: %v, want %s", a, id, p, j.Package.Filename)
			}
		}
	}
	if len(e.db("aarch64", "local.db")) != 4 {
		t.Errorf("aarch64 db has %d packages, want the 4 any ones", len(e.db("aarch64", "local.db")))
	}
	// A failed job settles at once, never published.
	j, err := e.submit("local", pkg(t, "w00", "0.1-1", "any"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j = e.wait(j.ID); j.Status != Failed || j.PublishedAt != nil {
		t.Errorf("older version: %+v, want failed and not published", j)
	}
}

// The repo's actor may publish a db before the worker records the job
// done: the worker's record keeps the publish time.
func TestPublishedKeptByWorker(t *testing.T) {
	e := newEnv(t, "", testConfig(), false)
	j, err := e.submit("local", pkg(t, "early", "1-1", "x86_64"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Truncate(time.Second)
	if err := e.svc.published(j.ID, at); err != nil {
		t.Fatal(err)
	}
	j.Status = Done
	if err := e.svc.putJob(j); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Job(j.ID); got.PublishedAt == nil || !got.PublishedAt.Equal(at) || !got.Settled() {
		t.Errorf("job = %+v, want published at %v", got, at)
	}
}

// A job done before a stop or crash whose db was not rebuilt since (its
// arch marked dirty) is published by the builds at start; one whose db
// was rebuilt (the record lost the time) is published at New.
func TestPublishedAfterRestart(t *testing.T) {
	for _, dirty := range []bool{true, false} {
		t.Run(fmt.Sprintf("dirty=%v", dirty), func(t *testing.T) {
			cfg := testConfig()
			e := newEnv(t, "", cfg, true)
			j, err := e.submit("local", pkg(t, "crash", "1-1", "any"), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			j = e.wait(j.ID)
			e.stop()

			// What a crash leaves: the record done without the time, and
			// with dirty, the marks of dbs that lag their index.
			st, err := store.Open(e.dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			j.PublishedAt = nil
			val, _ := json.Marshal(j)
			if err := st.Put(jobPrefix+j.ID, val); err != nil {
				t.Fatal(err)
			}
			if dirty {
				for _, a := range j.Package.Arches {
					st.Put(dirtyKey("archlinux/local", a), []byte{1})
				}
			}
			st.Close()

			e2 := newEnv(t, e.dir, cfg, false)
			got, err := e2.svc.Job(j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if (got.PublishedAt != nil) == dirty {
				t.Fatalf("job after New = %+v, want published only if its dbs are current", got)
			}
			if !dirty {
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { e2.svc.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			if got = e2.wait(j.ID); got.PublishedAt == nil {
				t.Errorf("job after restart = %+v, want published", got)
			}
			for _, a := range []string{"x86_64", "aarch64"} {
				if e2.db(a, "local.db")["crash"] == nil {
					t.Errorf("%s db lacks the package", a)
				}
			}
		})
	}
}
