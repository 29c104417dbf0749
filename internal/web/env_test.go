package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/proxy"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
	"github.com/mirrord/mirrord/internal/upstream"
)

// env is a whole mirrord in one process, mounted as cmd/mirrord mounts it:
// core mirrored (synced once from a local upstream), extra proxied from
// it, custom hosted with one published package.
type env struct {
	t   *testing.T
	srv *httptest.Server
	cfg *config.Config
	st  *store.Store
	reg *prometheus.Registry
	api *api.Handler
	ui  *UI
	pub *hosted.Service
	// traffic is the UI's TrafficSource over the proxy and the fetcher.
	traffic *proxyTraffic
}

// proxyTraffic is cmd/mirrord's trafficSource (cmd/mirrord/traffic.go),
// which a test of web cannot import.
type proxyTraffic struct {
	requests *proxy.Metrics
	fetcher  *fetch.Fetcher
}

func (p *proxyTraffic) Traffic() Traffic {
	c := p.requests.Counts()
	return Traffic{Requests: c.Answered, Hits: c.Hits, Coalesced: c.Coalesced,
		Served: c.ServedBytes, Fetched: p.fetcher.FetchedBytes(), InflightReaders: c.InflightReaders}
}

const built = 1767225600 // 2026-01-01

// upPkg is a package in the upstream's db; body nil means the db names a
// file that upstream does not hold (enough for listings).
type upPkg struct {
	alpm.Package
	body []byte
}

// adminToken writes to every hosted repo of the test env.
const adminToken = "mirrord_web-test-admin-token"

var adminSum = sha256.Sum256([]byte(adminToken))

func writeUpstreamRepo(t *testing.T, root, repo string, pkgs []upPkg) {
	t.Helper()
	dir := filepath.Join(root, repo, "os", "x86_64")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var list []*alpm.Package
	for i := range pkgs {
		p := &pkgs[i].Package
		if p.Arch == "" {
			p.Arch = "x86_64"
		}
		if p.Base == "" {
			p.Base = p.Name
		}
		if p.BuildDate == 0 {
			p.BuildDate = built
		}
		if p.Packager == "" {
			p.Packager = "Test Packager <test@example.org>"
		}
		p.Filename = p.Name + "-" + p.Version + "-" + p.Arch + ".pkg.tar.zst"
		if b := pkgs[i].body; b != nil {
			sum := sha256.Sum256(b)
			p.SHA256Sum, p.CSize = hex.EncodeToString(sum[:]), int64(len(b))
			if err := os.WriteFile(filepath.Join(dir, p.Filename), b, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if p.CSize == 0 {
			p.CSize = 1000
		}
		list = append(list, p)
	}
	for _, files := range []bool{false, true} {
		var b bytes.Buffer
		if err := alpm.WriteDB(&b, list, alpm.WriteOptions{Files: files, ModTime: time.Unix(built, 0)}); err != nil {
			t.Fatal(err)
		}
		name := repo + ".db"
		if files {
			name = repo + ".files"
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the config changed by edit first (nil: as
// newEnv); the changes must keep archlinux's repos.
func newEnvWith(t *testing.T, edit func(*config.Config)) *env {
	t.Helper()
	upRoot := t.TempDir()
	writeUpstreamRepo(t, upRoot, "core", []upPkg{
		{Package: alpm.Package{Name: "glibc", Version: "2.41-1", Desc: "GNU C Library", URL: "https://www.gnu.org/software/libc", Licenses: []string{"GPL-2.0-or-later", "LGPL-2.1-or-later"}, ISize: 48 << 20, PGPSig: "iQEzBAABCAAdFiEEAAAA"}, body: bytes.Repeat([]byte("g"), 3000)},
		{Package: alpm.Package{Name: "bash", Version: "5.2.037-1", Desc: "The GNU Bourne Again shell", Provides: []string{"sh"}, Depends: []string{"glibc"}, ISize: 9 << 20}, body: bytes.Repeat([]byte("b"), 2000)},
	})
	extra := []upPkg{
		{Package: alpm.Package{Name: "python", Version: "3.13.1-1", Desc: "The Python programming language", Depends: []string{"glibc", "bash"}}, body: []byte("python package bytes")},
		{Package: alpm.Package{Name: "evil", Version: "1-1", Desc: `<script>alert("x")</script><img src=x onerror=alert(1)>`, URL: "javascript:alert(1)"}},
	}
	for i := range 120 {
		extra = append(extra, upPkg{Package: alpm.Package{Name: fmt.Sprintf("lib%03d", i), Version: "1.0-1", Desc: fmt.Sprintf("library number %d", i)}})
	}
	writeUpstreamRepo(t, upRoot, "extra", extra)
	os.WriteFile(filepath.Join(upRoot, "lastupdate"), []byte(fmt.Sprint(built)), 0o644)
	up := httptest.NewServer(http.FileServer(http.Dir(upRoot)))
	t.Cleanup(up.Close)

	dir := t.TempDir()
	cfg := &config.Config{
		DataDir: dir,
		Cache:   config.Cache{DBMaxAge: time.Minute},
		Hosted:  config.Hosted{Workers: 2, Debounce: 10 * time.Millisecond, MaxDelay: time.Second, MaxUpload: 1 << 20},
		Sync:    config.Sync{Concurrency: 2, PruneAfter: time.Hour},
		Distros: map[string]config.Distro{"archlinux": {
			Layout: "$repo/os/$arch", Arch: []string{"x86_64"},
			Upstreams: []string{up.URL + "/$repo/os/$arch"},
			Repos: map[string]config.Repo{
				"core":   {Mode: config.ModeMirror, SyncInterval: time.Hour},
				"extra":  {Mode: config.ModeProxy},
				"custom": {Mode: config.ModeHosted},
			},
		}},
	}
	if edit != nil {
		edit(cfg)
	}
	reg := prometheus.NewRegistry()
	st, err := store.Open(dir, store.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.NewClient(upstream.Options{Retries: 0}, reg)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(cfg, st, catalog.Options{Upstream: client})
	if err != nil {
		t.Fatal(err)
	}
	fetcher := fetch.New(st, fetch.Options{Catalog: cat, Registerer: reg})
	sched, err := sync.New(cat, st, sync.Options{Fetcher: fetcher, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hosted.New(cat, st, hosted.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(cat, st, api.Options{Publisher: pub, Syncer: sched, InFlight: fetcher.Flights().Len, Registerer: reg, AdminToken: adminSum[:]})
	counts := proxy.NewMetrics(reg, cat, fetcher.Flights())
	traffic := &proxyTraffic{requests: counts, fetcher: fetcher}
	ui, err := New(cat, a, st, Options{Traffic: traffic})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := proxy.New(cat, st, proxy.Options{Fetcher: fetcher, Index: ui.Index(), Metrics: counts, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/api/v1/", a)
	mux.Handle("GET /{$}", ui)
	mux.Handle("/ui/", ui)
	mux.Handle("/static/", ui)
	mux.Handle("/", tree)
	srv := httptest.NewServer(proxy.Guard(mux))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pub.Run(ctx); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		fetcher.Shutdown(context.Background())
		st.Close()
		client.Close()
	})
	e := &env{t: t, srv: srv, cfg: cfg, st: st, reg: reg, api: a, ui: ui, pub: pub, traffic: traffic}

	if err := sched.Sync(t.Context(), "archlinux", "core"); err != nil {
		t.Fatalf("sync core: %v", err)
	}
	// A client's pacman -Sy and a download: the proxy caches extra's db
	// and python; the rest of extra stays "not cached".
	for _, p := range []string{"/archlinux/extra/os/x86_64/extra.db", "/archlinux/extra/os/x86_64/python-3.13.1-1-x86_64.pkg.tar.zst", "/archlinux/extra/os/x86_64/python-3.13.1-1-x86_64.pkg.tar.zst"} {
		if code, _, _ := e.get(p); code != 200 {
			t.Fatalf("GET %s = %d, want 200", p, code)
		}
	}
	file, pkg := hostedPkg(t, "hello", "1.0-1", "x86_64", "A friendly greeter", "glibc>=2.38", "sh", "libfoo.so=1-64")
	e.publish("archlinux/custom", file, pkg)
	return e
}

// hostedPkg builds a real package archive, named as makepkg names it.
func hostedPkg(t *testing.T, name, version, arch, desc string, depends ...string) (filename string, pkg []byte) {
	t.Helper()
	pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: version, Desc: desc, Arch: arch,
		BuildDate: built, ISize: 3, Packager: "Hosted Packager <ci@example.org>", Depends: depends,
		OptDepends: []string{"python: for the scripts"}, Licenses: []string{"MIT"}}}
	var b bytes.Buffer
	if err := alpm.WritePackage(&b, pi, []alpm.PackageFile{{Name: "usr/bin/" + name, Body: []byte("hi\n")}}, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	return name + "-" + version + "-" + arch + ".pkg.tar.zst", b.Bytes()
}

// publish uploads to repo ("distro/repo") through the API, as mirrord
// publish does, and waits until the db lists it.
func (e *env) publish(repo, filename string, pkg []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/repos/"+repo+"/packages?filename="+filename, bytes.NewReader(pkg))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	var ack struct{ Job string }
	json.NewDecoder(resp.Body).Decode(&ack)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		e.t.Fatalf("publish %s = %d, want 202", filename, resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 20*time.Second)
	defer cancel()
	j, err := e.pub.WaitJob(ctx, ack.Job)
	if err != nil || j.Status != hosted.Done {
		e.t.Fatalf("job %s = %+v, %v; want done", ack.Job, j, err)
	}
	if err := e.pub.WaitIdle(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(path string, header ...string) (int, string, http.Header) {
	e.t.Helper()
	return e.do("GET", path, header...)
}

func (e *env) do(method, path string, header ...string) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// page gets an HTML page and fails unless it is one.
func (e *env) page(path string) string {
	e.t.Helper()
	code, body, h := e.get(path)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		e.t.Fatalf("GET %s = %d %s, want 200 text/html\n%s", path, code, h.Get("Content-Type"), body)
	}
	return body
}

func (e *env) json(path string, v any) {
	e.t.Helper()
	code, body, _ := e.get(path)
	if code != 200 {
		e.t.Fatalf("GET %s = %d\n%s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
}
