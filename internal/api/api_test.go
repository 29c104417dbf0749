package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/prefetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
	"github.com/mirrord/mirrord/internal/upstream"
)

const (
	tokenCI    = "ci-secret"
	tokenOther = "other-secret"
)

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testConfig() *config.Config {
	return &config.Config{
		Hosted: config.Hosted{Workers: 2, Debounce: 10 * time.Millisecond, MaxDelay: time.Second, MaxUpload: 256 << 10, Retention: 0},
		API: config.API{Tokens: []config.Token{
			{Name: "ci", SHA256: hash(tokenCI), Repos: []string{"archlinux/local", "archlinux/core"}},
			{Name: "other", SHA256: hash(tokenOther), Repos: []string{"archlinux/other"}},
		}},
		Distros: map[string]config.Distro{"archlinux": {
			Layout: "$repo/os/$arch", Arch: []string{"x86_64"},
			Repos: map[string]config.Repo{
				"local": {Mode: config.ModeHosted}, "other": {Mode: config.ModeHosted},
				"core": {Mode: config.ModeMirror}, "extra": {Mode: config.ModeProxy},
			},
		}},
	}
}

type fakeSyncer struct{ calls []string }

// Trigger refuses what sync.Scheduler.Trigger refuses, with its sentinel
// under a text that says otherwise: the API must classify by the sentinel.
func (f *fakeSyncer) Trigger(distro, repo string) error {
	f.calls = append(f.calls, distro+"/"+repo)
	switch repo {
	case "core", "":
		return nil
	}
	return fmt.Errorf("sync %s/%s busy, already running: %w", distro, repo, sync.ErrUnknownRepo)
}

func (f *fakeSyncer) States() []sync.State { return []sync.State{{Repo: "archlinux/core"}} }

type env struct {
	t    *testing.T
	dir  string
	st   *store.Store
	svc  *hosted.Service
	h    *Handler
	srv  *httptest.Server
	sync *fakeSyncer
}

func newEnv(t *testing.T, cfg *config.Config) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := hosted.New(testCatalog(t, cfg, st), st, hosted.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	e := &env{t: t, dir: dir, st: st, svc: svc, sync: &fakeSyncer{}}
	e.h = New(testCatalog(t, cfg, st), st, Options{Publisher: svc, Syncer: e.sync, InFlight: func() int { return 3 }, Registerer: prometheus.NewRegistry()})
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(func() {
		e.srv.Close()
		cancel()
		<-done
		st.Close()
	})
	return e
}

func pkg(t *testing.T, name, version, arch, desc string) []byte {
	t.Helper()
	pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: version, Desc: desc, Arch: arch, BuildDate: 1795824270, ISize: 3, Depends: []string{"glibc"}}}
	var b bytes.Buffer
	if err := alpm.WritePackage(&b, pi, []alpm.PackageFile{{Name: "usr/share/" + name, Body: []byte("hi\n")}}, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// do sends a request and decodes the JSON answer.
func (e *env) do(method, path, token string, body io.Reader, contentType string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s = %d, body %q is not a JSON object", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, out, resp.Header
}

// publish uploads data raw and waits for the job.
func (e *env) publish(repo string, data []byte, query string) map[string]any {
	e.t.Helper()
	code, out, _ := e.do("POST", "/api/v1/repos/archlinux/"+repo+"/packages?filename=x.pkg.tar.zst"+query, tokenCI, bytes.NewReader(data), "application/octet-stream")
	if code != http.StatusAccepted {
		e.t.Fatalf("upload = %d %v, want 202", code, out)
	}
	return e.waitJob(out["job"].(string))
}

func (e *env) waitJob(id string) map[string]any {
	e.t.Helper()
	code, j, _ := e.do("GET", "/api/v1/jobs/"+id+"?wait=20s", "", nil, "")
	if code != 200 || (j["status"] != "done" && j["status"] != "failed") {
		e.t.Fatalf("job %s = %d %v, want finished", id, code, j)
	}
	return j
}

func (e *env) idle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.svc.WaitIdle(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func TestPublishAndRead(t *testing.T) {
	e := newEnv(t, testConfig())
	for i := range 7 {
		// ?wait holds the answer until the db listing the package is
		// served: published_at says since when.
		if j := e.publish("local", pkg(t, fmt.Sprintf("tool%d", i), "1.0-1", "x86_64", fmt.Sprintf("a tool number %d", i)), ""); j["status"] != "done" || j["published_at"] == nil {
			t.Fatalf("job = %v, want done with published_at", j)
		}
	}
	// Multipart with a signature.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("package", "signed-1-1-any.pkg.tar.zst")
	signed := pkg(t, "signed", "1-1", "any", "carries a signature")
	fw.Write(signed)
	sw, _ := mw.CreateFormFile("signature", "signed-1-1-any.pkg.tar.zst.sig")
	sw.Write(signature(t, signed))
	mw.Close()
	code, out, hdr := e.do("POST", "/api/v1/repos/archlinux/local/packages", tokenCI, &body, mw.FormDataContentType())
	if code != 202 || hdr.Get("Location") != out["status_url"] {
		t.Fatalf("multipart upload = %d %v", code, out)
	}
	if j := e.waitJob(out["job"].(string)); j["status"] != "done" {
		t.Fatalf("multipart job = %v", j)
	}
	e.idle()

	code, list, hdr := e.do("GET", "/api/v1/repos/archlinux/local/x86_64/packages?per_page=3&page=2", "", nil, "")
	if code != 200 || list["total"] != 8.0 || len(list["packages"].([]any)) != 3 {
		t.Fatalf("list page 2 = %d %v", code, list)
	}
	if first := list["packages"].([]any)[0].(map[string]any)["name"]; first != "tool2" {
		t.Errorf("page 2 starts with %v, want tool2 (sorted by name)", first)
	}
	link := hdr.Get("Link")
	for _, want := range []string{`page=1&per_page=3>; rel="first"`, `page=1&per_page=3>; rel="prev"`, `page=3&per_page=3>; rel="next"`, `page=3&per_page=3>; rel="last"`} {
		if !strings.Contains(link, want) {
			t.Errorf("Link = %s, lacks %s", link, want)
		}
	}
	_, list, _ = e.do("GET", "/api/v1/repos/archlinux/local/x86_64/packages?q=NUMBER+3", "", nil, "")
	if list["total"] != 1.0 {
		t.Errorf("q=number 3 total = %v, want 1 (matches the description)", list["total"])
	}
	code, p, _ := e.do("GET", "/api/v1/repos/archlinux/local/x86_64/packages/signed", "", nil, "")
	if code != 200 || p["version"] != "1-1" || p["pgpsig"] == nil || p["sha256sum"] == nil || p["arch"] != "any" {
		t.Errorf("package signed = %d %v", code, p)
	}
	code, p, _ = e.do("GET", "/api/v1/repos/archlinux/local/x86_64/packages/tool1", "", nil, "")
	if deps, _ := p["depends"].([]any); code != 200 || len(deps) != 1 {
		t.Errorf("package tool1 = %d %v, want its depends", code, p)
	}

	// The jobs, newest first: the multipart upload, then the tools.
	code, jobs, _ := e.do("GET", "/api/v1/jobs?distro=archlinux&repo=local&limit=3", "", nil, "")
	if l, _ := jobs["jobs"].([]any); code != 200 || len(l) != 3 || l[0].(map[string]any)["upload"] != "signed-1-1-any.pkg.tar.zst" || l[0].(map[string]any)["status"] != "done" {
		t.Errorf("jobs?limit=3 = %d %v; want 3, the signed upload first", code, jobs)
	}
	if _, jobs, _ = e.do("GET", "/api/v1/jobs", "", nil, ""); len(jobs["jobs"].([]any)) != 8 {
		t.Errorf("jobs = %v; want the 8", jobs)
	}
	if _, jobs, _ = e.do("GET", "/api/v1/jobs?repo=other", "", nil, ""); len(jobs["jobs"].([]any)) != 0 {
		t.Errorf("jobs of another repo = %v; want none", jobs)
	}
	for _, bad := range []string{"0", "101", "x"} {
		if code, _, _ := e.do("GET", "/api/v1/jobs?limit="+bad, "", nil, ""); code != 400 {
			t.Errorf("jobs?limit=%s = %d; want 400", bad, code)
		}
	}

	code, repos, _ := e.do("GET", "/api/v1/repos", "", nil, "")
	raw, _ := json.Marshal(repos)
	if code != 200 || !strings.Contains(string(raw), `{"arch":"x86_64","db":true,"packages":8}`) || !strings.Contains(string(raw), `"mode":"proxy"`) {
		t.Errorf("repos = %d %s", code, raw)
	}
	code, st, _ := e.do("GET", "/api/v1/status", "", nil, "")
	if code != 200 || st["in_flight"] != 3.0 || st["cache"].(map[string]any)["files"].(float64) < 9 || st["sync"] == nil {
		t.Errorf("status = %d %v", code, st)
	}
}

func TestReadErrors(t *testing.T) {
	e := newEnv(t, testConfig())
	e.idle()
	cases := []struct {
		name, path string
		code       int
	}{
		{"unknown distro", "/api/v1/repos/nope/local/x86_64/packages", 404},
		{"unknown repo", "/api/v1/repos/archlinux/nope/x86_64/packages", 404},
		{"unknown arch", "/api/v1/repos/archlinux/local/armv7h/packages", 404},
		{"no db cached", "/api/v1/repos/archlinux/extra/x86_64/packages", 404},
		{"unknown package", "/api/v1/repos/archlinux/local/x86_64/packages/nope", 404},
		{"per_page too big", "/api/v1/repos/archlinux/local/x86_64/packages?per_page=501", 400},
		{"page zero", "/api/v1/repos/archlinux/local/x86_64/packages?page=0", 400},
		{"unknown job", "/api/v1/jobs/0123456789abcdef01234567", 404},
		{"bad job id", "/api/v1/jobs/..", 404},
		{"no endpoint", "/api/v1/nope", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, _ := e.do("GET", c.path, "", nil, "")
			if code != c.code || out["error"] == "" || out["error"] == nil {
				t.Errorf("GET %s = %d %v, want %d with an error", c.path, code, out, c.code)
			}
		})
	}
}

// A mirror repo's db placed in the tree is listed; a new db replaces the
// cached parse.
func TestReadMirrorDB(t *testing.T) {
	e := newEnv(t, testConfig())
	write := func(names ...string) {
		var pkgs []*alpm.Package
		for _, n := range names {
			pkgs = append(pkgs, &alpm.Package{Name: n, Version: "1-1", Arch: "x86_64", Filename: n + "-1-1-x86_64.pkg.tar.zst"})
		}
		var b bytes.Buffer
		if err := alpm.WriteDB(&b, pkgs, alpm.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e.st.WriteFile("archlinux/core/os/x86_64/core.db", b.Bytes(), store.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "b")
	if _, out, _ := e.do("GET", "/api/v1/repos/archlinux/core/x86_64/packages", "", nil, ""); out["total"] != 2.0 {
		t.Errorf("core total = %v, want 2", out["total"])
	}
	write("a", "b", "c")
	if _, out, _ := e.do("GET", "/api/v1/repos/archlinux/core/x86_64/packages", "", nil, ""); out["total"] != 3.0 {
		t.Errorf("core total after a new db = %v, want 3", out["total"])
	}
}

func TestUploadRefused(t *testing.T) {
	e := newEnv(t, testConfig())
	if j := e.publish("local", pkg(t, "have", "2-1", "x86_64", ""), ""); j["status"] != "done" {
		t.Fatal(j)
	}
	e.idle()
	dbPath := filepath.Join(e.dir, "tree/archlinux/local/os/x86_64/local.db.tar.gz")
	before, _ := os.ReadFile(dbPath)
	good := pkg(t, "new", "1-1", "x86_64", "")
	multipartNamed := func(name string) (io.Reader, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("package", name)
		fw.Write(good)
		mw.Close()
		return &b, mw.FormDataContentType()
	}
	mpSlash, ctSlash := multipartNamed("../../etc/new-1-1-x86_64.pkg.tar.zst")
	cases := []struct {
		name, path, token, ct string
		body                  io.Reader
		code                  int
		want                  string
	}{
		{name: "no token", path: "local/packages", body: bytes.NewReader(good), code: 401, want: "bearer token"},
		{name: "unknown token", path: "local/packages", token: "guess", body: bytes.NewReader(good), code: 401, want: "unknown token"},
		{name: "token for another repo", path: "local/packages", token: tokenOther, body: bytes.NewReader(good), code: 403, want: "archlinux/local"},
		{name: "mirror repo", path: "core/packages", token: tokenCI, body: bytes.NewReader(good), code: 404, want: "hosted repos only"},
		{name: "unknown repo", path: "nope/packages", token: tokenCI, body: bytes.NewReader(good), code: 404, want: "no repo"},
		{name: "not a package", path: "local/packages", token: tokenCI, body: strings.NewReader("#!/bin/sh\necho hi\n"), code: 422, want: "not a package"},
		{name: "slash in name", path: "local/packages?filename=a/b-1-1-x86_64.pkg.tar.zst", token: tokenCI, body: bytes.NewReader(good), code: 400, want: "invalid file name"},
		{name: "dotdot in name", path: "local/packages?filename=..", token: tokenCI, body: bytes.NewReader(good), code: 400, want: "invalid file name"},
		{name: "dotdot in multipart name", path: "local/packages", token: tokenCI, body: mpSlash, ct: ctSlash, code: 400, want: "invalid file name"},
		{name: "too large", path: "local/packages", token: tokenCI, body: io.MultiReader(bytes.NewReader(good), bytes.NewReader(make([]byte, 300<<10))), code: 413, want: "too large"},
		{name: "bad multipart", path: "local/packages", token: tokenCI, body: strings.NewReader("no boundary here"), ct: "multipart/form-data; boundary=x", code: 400, want: "multipart"},
		{name: "unknown form field", path: "local/packages", token: tokenCI, body: strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"what\"\r\n\r\nv\r\n--x--\r\n"), ct: "multipart/form-data; boundary=x", code: 400, want: "unknown form field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := c.ct
			if ct == "" {
				ct = "application/octet-stream"
			}
			code, out, _ := e.do("POST", "/api/v1/repos/archlinux/"+c.path, c.token, c.body, ct)
			msg, _ := out["error"].(string)
			if code != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("POST = %d %q, want %d containing %q", code, msg, c.code, c.want)
			}
		})
	}
	// Failures found by the worker come back in the job, with the status
	// a synchronous answer would have had.
	for _, c := range []struct {
		name string
		data []byte
		code float64
		want string
	}{
		{"older version", pkg(t, "have", "1-1", "x86_64", ""), 409, "not newer"},
		{"arch mismatch", pkg(t, "arm", "1-1", "aarch64", ""), 422, "aarch64"},
		{"truncated archive", good[:len(good)-20], 422, "invalid package"},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := e.publish("local", c.data, "")
			if msg, _ := j["error"].(string); j["status"] != "failed" || j["code"] != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("job = %v, want failed %v containing %q", j, c.code, c.want)
			}
		})
	}
	t.Run("truncated body", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/v1/repos/archlinux/local/packages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", tokenCI, len(good))
		conn.Write(good[:len(good)/2])
		conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !bytes.Contains(body, []byte("truncated upload")) {
			t.Errorf("truncated body = %d %s, want 400 truncated upload", resp.StatusCode, body)
		}
	})
	e.idle()
	after, _ := os.ReadFile(dbPath)
	if !bytes.Equal(before, after) {
		t.Error("refused uploads changed the db")
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "tree/archlinux/local/os/x86_64"))
	if len(ents) != 5 {
		t.Errorf("tree holds %d files, want the package, 2 dbs and 2 links", len(ents))
	}
	if left, _ := os.ReadDir(filepath.Join(e.dir, "staging")); len(left) != 0 {
		t.Errorf("staging holds %d files", len(left))
	}
	// force=true replaces with an older version.
	if j := e.publish("local", pkg(t, "have", "1-1", "x86_64", ""), "&force=true"); j["status"] != "done" {
		t.Errorf("forced = %v", j)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, testConfig())
	e.publish("local", pkg(t, "gone", "1-1", "x86_64", ""), "")
	e.idle()
	if code, _, _ := e.do("DELETE", "/api/v1/repos/archlinux/local/x86_64/packages/gone", "", nil, ""); code != 401 {
		t.Errorf("DELETE without token = %d, want 401", code)
	}
	if code, _, _ := e.do("DELETE", "/api/v1/repos/archlinux/local/x86_64/packages/nope", tokenCI, nil, ""); code != 404 {
		t.Errorf("DELETE unknown = %d, want 404", code)
	}
	if code, out, _ := e.do("DELETE", "/api/v1/repos/archlinux/local/x86_64/packages/gone", tokenCI, nil, ""); code != 200 {
		t.Fatalf("DELETE = %d %v", code, out)
	}
	e.idle()
	if _, out, _ := e.do("GET", "/api/v1/repos/archlinux/local/x86_64/packages", "", nil, ""); out["total"] != 0.0 {
		t.Errorf("after delete total = %v", out["total"])
	}
}

func TestSync(t *testing.T) {
	e := newEnv(t, testConfig())
	cases := []struct {
		name, path, token string
		code              int
	}{
		{"no token", "/api/v1/sync/archlinux/core", "", 401},
		{"token without the repo", "/api/v1/sync/archlinux/core", tokenOther, 403},
		{"start", "/api/v1/sync/archlinux/core", tokenCI, 202},
		{"again", "/api/v1/sync/archlinux/core", tokenCI, 202},
		{"not a mirror", "/api/v1/sync/archlinux/local", tokenCI, 404},
		{"unknown distro", "/api/v1/sync/nope", tokenCI, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, out, _ := e.do("POST", c.path, c.token, nil, ""); code != c.code {
				t.Errorf("POST %s = %d %v, want %d", c.path, code, out, c.code)
			}
		})
	}
	h := New(testCatalog(t, testConfig(), e.st), e.st, Options{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/sync/archlinux", nil)
	req.Header.Set("Authorization", "Bearer "+tokenCI)
	h.ServeHTTP(rec, req)
	if rec.Code != 503 {
		t.Errorf("sync without a Syncer = %d, want 503", rec.Code)
	}
}

// The real scheduler through the API: what it refuses (not a mirror repo)
// is a 404 by its sentinel, and a repo whose sync is already asked for is
// not refused (Scheduler.Trigger queues one more, it never answers busy).
func TestSyncScheduler(t *testing.T) {
	cfg := testConfig()
	d := cfg.Distros["archlinux"]
	d.Upstreams = []string{"https://mirror.invalid/$repo/os/$arch"} // never asked: nothing runs the scheduler
	cfg.Distros["archlinux"] = d
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	up, err := upstream.NewClient(upstream.Options{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	cat, err := catalog.New(cfg, st, catalog.Options{Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := sync.New(cat, st, sync.Options{Fetcher: fetch.New(st, fetch.Options{Catalog: cat})})
	if err != nil {
		t.Fatal(err)
	}
	h := New(cat, st, Options{Syncer: sched})
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/v1/sync/archlinux/core", 202},
		{"/api/v1/sync/archlinux/core", 202}, // not run yet: still pending
		{"/api/v1/sync/archlinux", 202},
		{"/api/v1/sync/archlinux/local", 404}, // hosted
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", c.path, nil)
		req.Header.Set("Authorization", "Bearer "+tokenCI)
		h.ServeHTTP(rec, req)
		if rec.Code != c.code {
			t.Errorf("POST %s = %d %s, want %d", c.path, rec.Code, rec.Body, c.code)
		}
	}
}

// statesSyncer is a Syncer whose States are fixed and never nil.
type statesSyncer []sync.State

func (s statesSyncer) Trigger(distro, repo string) error { return nil }
func (s statesSyncer) States() []sync.State              { return append([]sync.State{}, s...) }

// The "sync" of /api/v1/status is the Syncer's states as sync.State
// marshals them (what the field held as an any before it was typed):
// absent without a Syncer, [] with one that has no mirror repo.
func TestStatusSync(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	when := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	states := statesSyncer{
		{Repo: "archlinux/core", LastAttempt: when, LastSuccess: when, DurationSeconds: 1.5, Files: 8, Bytes: 4096, LastUpdate: "1000"},
		{Repo: "archlinux/extra", Running: true, LastAttempt: when, Failures: 2, LastError: "every mirror failed",
			Progress: &sync.Progress{FilesDone: 1, FilesTotal: 3, BytesDone: 10, BytesTotal: 30, RateBytesPerSecond: 5}},
	}
	cases := []struct {
		name   string
		syncer Syncer
		want   string // compact JSON of "sync"; "" for absent
	}{
		{"no syncer", nil, ""},
		{"no mirror repo", statesSyncer{}, `[]`},
		{"two repos", states, `[{"repo":"archlinux/core","running":false,"last_attempt":"2026-05-01T12:00:00Z","last_success":"2026-05-01T12:00:00Z","duration_seconds":1.5,"files":8,"bytes":4096,"failures":0,"lastupdate":"1000"},` +
			`{"repo":"archlinux/extra","running":true,"last_attempt":"2026-05-01T12:00:00Z","duration_seconds":0,"files":0,"bytes":0,"failures":2,"last_error":"every mirror failed",` +
			`"progress":{"files_done":1,"files_total":3,"bytes_done":10,"bytes_total":30,"rate_bytes_per_second":5}}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := New(testCatalog(t, testConfig(), st), st, Options{Syncer: c.syncer})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
			var out map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != 200 || err != nil {
				t.Fatalf("GET /api/v1/status = %d %v %s", rec.Code, err, rec.Body)
			}
			got := ""
			if raw, ok := out["sync"]; ok {
				var b bytes.Buffer
				if err := json.Compact(&b, raw); err != nil {
					t.Fatal(err)
				}
				got = b.String()
			}
			if got != c.want {
				t.Errorf("status sync = %s, want %s", got, c.want)
			}
		})
	}
}

// No write is anonymous: not from loopback, not with a token anywhere but
// the Authorization header, and not from another site's page even with
// a valid token. With no api.tokens, the admin token writes everything.
func TestNoAnonymousWrites(t *testing.T) {
	cfg := testConfig()
	cfg.API.Tokens = nil
	admin := "mirrord_admin-token-for-tests"
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := hosted.New(testCatalog(t, cfg, st), st, hosted.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(admin))
	h := New(testCatalog(t, cfg, st), st, Options{Publisher: svc, Syncer: &fakeSyncer{}, AdminToken: sum[:]})
	upload := "/api/v1/repos/archlinux/local/packages?filename=x.pkg.tar.zst"
	cases := []struct {
		name, method, path, remote string
		header                     map[string]string
		code                       int
	}{
		{"loopback without token", "POST", upload, "127.0.0.1:4000", nil, 401},
		{"ipv6 loopback without token", "POST", upload, "[::1]:4000", nil, 401},
		{"LAN without token", "POST", upload, "192.0.2.7:4000", nil, 401},
		{"token in the query", "POST", upload + "&token=" + admin + "&access_token=" + admin, "127.0.0.1:4000", nil, 401},
		{"token in a cookie", "POST", upload, "127.0.0.1:4000", map[string]string{"Cookie": "token=" + admin + "; mirrord_token=" + admin}, 401},
		{"basic auth", "POST", upload, "127.0.0.1:4000", map[string]string{"Authorization": "Basic " + admin}, 401},
		{"a web page's text/plain POST", "POST", upload, "127.0.0.1:4000", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403},
		{"foreign Origin with the token", "POST", upload, "127.0.0.1:4000", map[string]string{"Origin": "http://evil.example", "Authorization": "Bearer " + admin}, 403},
		{"null Origin with the token", "POST", upload, "127.0.0.1:4000", map[string]string{"Origin": "null", "Authorization": "Bearer " + admin}, 403},
		{"Origin on another port", "POST", upload, "127.0.0.1:4000", map[string]string{"Origin": "http://example.com:9999", "Authorization": "Bearer " + admin}, 403},
		{"cross-site fetch", "POST", upload, "127.0.0.1:4000", map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer " + admin}, 403},
		{"sync without token", "POST", "/api/v1/sync/archlinux/core", "127.0.0.1:4000", nil, 401},
		{"sync from a page", "POST", "/api/v1/sync/archlinux/core", "127.0.0.1:4000", map[string]string{"Origin": "http://evil.example", "Authorization": "Bearer " + admin}, 403},
		{"delete without token", "DELETE", "/api/v1/repos/archlinux/local/x86_64/packages/x", "127.0.0.1:4000", nil, 401},
		{"admin token", "POST", upload, "192.0.2.7:4000", map[string]string{"Authorization": "Bearer " + admin}, 202},
		{"admin token, same Origin", "POST", upload, "127.0.0.1:4000", map[string]string{"Authorization": "Bearer " + admin, "Origin": "http://example.com"}, 202},
		{"admin token, another repo", "POST", "/api/v1/repos/archlinux/other/packages?filename=x.pkg.tar.zst", "127.0.0.1:4000", map[string]string{"Authorization": "Bearer " + admin}, 202},
		{"admin token starts syncs", "POST", "/api/v1/sync/archlinux/core", "127.0.0.1:4000", map[string]string{"Authorization": "Bearer " + admin}, 202},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, bytes.NewReader(pkg(t, "lo", "1-1", "x86_64", "")))
			req.RemoteAddr = c.remote
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.code {
				t.Errorf("%s %s = %d %s, want %d", c.method, c.path, rec.Code, rec.Body, c.code)
			}
		})
	}
	// Without configured tokens and without an admin token, nothing writes.
	none := New(testCatalog(t, cfg, st), st, Options{Publisher: svc})
	req := httptest.NewRequest("POST", upload, bytes.NewReader(pkg(t, "lo", "1-1", "x86_64", "")))
	req.RemoteAddr = "127.0.0.1:4000"
	req.Header.Set("Authorization", "Bearer "+admin)
	rec := httptest.NewRecorder()
	none.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Errorf("no tokens at all: upload = %d, want 401", rec.Code)
	}
}

func TestAdminToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	sum, created, err := AdminToken(path)
	if err != nil || !created || len(sum) != 32 {
		t.Fatalf("AdminToken(new) = %x, %v, %v", sum, created, err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode = %v, %v; want 0600", info.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(data))
	if len(tok) < 40 || TokenHash(tok) != hex.EncodeToString(sum) {
		t.Errorf("admin.token holds %q; its hash is not the one returned", tok)
	}
	again, created, err := AdminToken(path)
	if err != nil || created || !bytes.Equal(again, sum) {
		t.Errorf("AdminToken(existing) = %x, %v, %v; want the same token, not created", again, created, err)
	}
	if a, b := NewToken(), NewToken(); a == b || !strings.HasPrefix(a, "mirrord_") {
		t.Errorf("NewToken() = %q, %q", a, b)
	}
	os.Chmod(path, 0o644)
	if _, _, err := AdminToken(path); err == nil || !strings.Contains(err.Error(), "others read") {
		t.Errorf("AdminToken(mode 0644) = %v, want refused", err)
	}
	link := filepath.Join(t.TempDir(), "admin.token")
	os.Symlink(path, link)
	if _, _, err := AdminToken(link); err == nil {
		t.Error("AdminToken(symlink) succeeded")
	}
	short := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(short, []byte("test\n"), 0o600)
	if _, _, err := AdminToken(short); err == nil {
		t.Error("AdminToken(4-character token) succeeded")
	}
}

// signature is a detached signature of data by a new key.
func signature(t *testing.T, data []byte) []byte {
	t.Helper()
	sec, _, err := pgp.NewKey("Uploader", "up@example.org")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(path, sec, 0o600)
	s, err := pgp.LoadSigner(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.Sign(&b, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A signed hosted repo serves its public key; others answer 404.
func TestRepoKey(t *testing.T) {
	sec, pub, err := pgp.NewKey("Repo", "repo@example.org")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(keyFile, sec, 0o600)
	cfg := testConfig()
	cfg.Hosted.SigningKey = keyFile
	e := newEnv(t, cfg)
	resp, err := http.Get(e.srv.URL + "/api/v1/repos/archlinux/local/key")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	k, _ := e.svc.Key("archlinux", "local")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pgp-keys" || !bytes.Equal(body, pub) ||
		resp.Header.Get("X-Key-Fingerprint") != k.Fingerprint {
		t.Errorf("GET key = %d %q %q, want the armored public key", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, path := range []string{"/api/v1/repos/archlinux/core/key", "/api/v1/repos/archlinux/nope/key"} {
		if code, _, _ := e.do("GET", path, "", nil, ""); code != 404 {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
	_, out, _ := e.do("GET", "/api/v1/repos", "", nil, "")
	if !strings.Contains(fmt.Sprint(out), k.Fingerprint) {
		t.Errorf("/api/v1/repos does not name the signing key %s: %v", k.Fingerprint, out)
	}
}

func TestStatusMapping(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{hosted.ErrNotFound, 404},
		{fmt.Errorf("x: %w", hosted.ErrOlderVersion), 409},
		{fmt.Errorf("x: %w", hosted.ErrInvalid), 422},
		{hosted.ErrTooLarge, 413},
		{&http.MaxBytesError{Limit: 1}, 413},
		{hosted.ErrBusy, 503},
		{store.ErrNotFound, 404},
		{fmt.Errorf("sync archlinux/local: %w", sync.ErrUnknownRepo), 404},
		{errors.New("sync archlinux/core: busy, already running"), 500}, // classified by sentinel, never by text
		{errorf(401, "x"), 401},
		{errors.New("disk on fire"), 500},
	}
	for _, c := range cases {
		if got := status(c.err); got != c.want {
			t.Errorf("status(%q) = %d, want %d", c.err, got, c.want)
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

// runsPrefetcher is a Prefetcher whose Runs are fixed and never nil.
type runsPrefetcher []prefetch.Run

func (p runsPrefetcher) Runs() []prefetch.Run { return append([]prefetch.Run{}, p...) }

// The "prefetch" of /api/v1/status is the Prefetcher's runs: absent
// without one, [] before any run.
func TestStatusPrefetch(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	when := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		prefetch Prefetcher
		want     string // compact JSON of "prefetch"; "" for absent
	}{
		{"no prefetcher", nil, ""},
		{"no run yet", runsPrefetcher{}, `[]`},
		{"a running and a finished run", runsPrefetcher{
			{Repo: "archlinux/core", Arch: "x86_64", Started: when, Finished: when.Add(time.Second), Files: 4, Bytes: 4096, Skipped: 1, Failures: 2},
			{Repo: "archlinux/extra", Arch: "x86_64", Started: when, Files: 1},
		}, `[{"repo":"archlinux/core","arch":"x86_64","started":"2026-05-01T12:00:00Z","finished":"2026-05-01T12:00:01Z","files":4,"bytes":4096,"skipped":1,"failures":2},` +
			`{"repo":"archlinux/extra","arch":"x86_64","started":"2026-05-01T12:00:00Z","files":1,"bytes":0,"skipped":0,"failures":0}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := New(testCatalog(t, testConfig(), st), st, Options{Prefetch: c.prefetch})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
			var out map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != 200 || err != nil {
				t.Fatalf("GET /api/v1/status = %d %v %s", rec.Code, err, rec.Body)
			}
			got := ""
			if raw, ok := out["prefetch"]; ok {
				var b bytes.Buffer
				if err := json.Compact(&b, raw); err != nil {
					t.Fatal(err)
				}
				got = b.String()
			}
			if got != c.want {
				t.Errorf("status prefetch = %s, want %s", got, c.want)
			}
		})
	}
}
