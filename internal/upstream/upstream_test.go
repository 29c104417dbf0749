package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	testRepo = "core"
	testArch = "x86_64"
	pkgName  = "hello-1:1.0-1-x86_64.pkg.tar.zst"
	pkgPath  = "/core/os/x86_64/" + pkgName
	dbName   = "core.db"
	dbPath   = "/core/os/x86_64/core.db"
)

// pkgData is 200 KB in which no two nearby offsets hold the same pattern,
// so a resume at a wrong offset changes the sha256.
var pkgData = patterned(200_000, 1)

var dbData = patterned(5000, 3)

var mtime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func patterned(n, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// writeTree lays files (URL path -> content) under a new directory.
func writeTree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		if err := writeFile(root, p, data); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writeFile writes data at the URL path p under root, dated mtime.
func writeFile(root, p string, data []byte) error {
	name := filepath.Join(root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return err
	}
	return os.Chtimes(name, mtime, mtime)
}

func defaultTree(t *testing.T) string {
	return writeTree(t, map[string][]byte{pkgPath: pkgData, dbPath: dbData, "/lastsync": []byte("1700000000\n")})
}

// startMirrors starts n fault servers over the same tree.
func startMirrors(t *testing.T, n int) []*faultserver.Server {
	t.Helper()
	root := defaultTree(t)
	out := make([]*faultserver.Server, n)
	for i := range out {
		out[i] = faultserver.NewTest(t, root)
	}
	return out
}

func template(s *faultserver.Server) string { return s.URL() + "/$repo/os/$arch" }

// testOptions have a tiny backoff and timeouts generous enough for a
// loaded machine under -race; tests that need a timeout to fire shorten it
// (see quickStall).
func testOptions() Options {
	return Options{
		Retries:        0,
		RetryWaitMin:   time.Millisecond,
		RetryWaitMax:   5 * time.Millisecond,
		ConnectTimeout: 5 * time.Second,
		HeaderTimeout:  5 * time.Second,
		StallTimeout:   5 * time.Second,
		Cooldown:       time.Minute,
		UserAgent:      "mirrord/test",
	}
}

// quickStall is the stall timeout of tests in which a gate holds a body
// for ever: short, so they stay fast.
const quickStall = 200 * time.Millisecond

// stallOptions are testOptions with quickStall when f holds the body.
func stallOptions(f faultserver.Fault) Options {
	o := testOptions()
	if f.Gate != nil {
		o.StallTimeout = quickStall
	}
	return o
}

func newSet(t *testing.T, opts Options, servers ...*faultserver.Server) (*MirrorSet, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := NewClient(opts, reg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	var tmpl []string
	for _, s := range servers {
		tmpl = append(tmpl, template(s))
	}
	set, err := c.Mirrors(tmpl)
	if err != nil {
		t.Fatalf("Mirrors(%q): %v", tmpl, err)
	}
	return set, reg
}

func pkgReq() Request {
	return Request{Repo: testRepo, Arch: testArch, File: pkgName, Resumable: true}
}

func dbReq() Request {
	return Request{Repo: testRepo, Arch: testArch, File: dbName}
}

// fetchAll fetches and reads the whole body, returning what arrived and
// the first error from Fetch or from reading.
func fetchAll(t *testing.T, set *MirrorSet, req Request) (*Response, []byte, error) {
	t.Helper()
	resp, err := set.Fetch(t.Context(), req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	return resp, buf.Bytes(), err
}

func sameBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if g, w := sha256.Sum256(got), sha256.Sum256(want); g != w {
		t.Fatalf("body: %d bytes sha256 %x, want %d bytes sha256 %x", len(got), g[:8], len(want), w[:8])
	}
}

func label(s *faultserver.Server) string { return s.Addr() }

func TestFetchGet(t *testing.T) {
	srv := startMirrors(t, 1)
	set, _ := newSet(t, testOptions(), srv...)
	resp, got, err := fetchAll(t, set, pkgReq())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	sameBytes(t, got, pkgData)
	if resp.Status != 200 || resp.Size != int64(len(pkgData)) || !resp.LastModified.Equal(mtime) ||
		resp.ETag == "" || resp.ContentType == "" || resp.Mirror != label(srv[0]) {
		t.Errorf("Response = %+v, want status 200, size %d, Last-Modified %v, an ETag and type, mirror %s",
			resp, len(pkgData), mtime, label(srv[0]))
	}
	log := srv[0].Log()
	if len(log) != 1 || log[0].Path != pkgPath || log[0].Header.Get("User-Agent") != "mirrord/test" {
		t.Errorf("server log = %+v, want one GET %s with User-Agent mirrord/test", log, pkgPath)
	}
	if h := set.Health()[0]; h.LatencySeconds <= 0 || h.ThroughputBytes <= 0 || h.Score <= 0 || !h.Healthy || h.URL != template(srv[0]) {
		t.Errorf("Health()[0] = %+v, want latency, throughput and score measured, healthy, URL %s", h, template(srv[0]))
	}
	if ae := log[0].Header.Get("Accept-Encoding"); ae != "" {
		t.Errorf("Accept-Encoding = %q, want none: files must arrive as stored", ae)
	}
}

func TestBaseRelative(t *testing.T) {
	srv := startMirrors(t, 1)
	set, _ := newSet(t, testOptions(), srv...)
	_, got, err := fetchAll(t, set, Request{File: "lastsync"})
	if err != nil || string(got) != "1700000000\n" {
		t.Fatalf("Fetch(lastsync) = %q, %v; want the file", got, err)
	}
}

func TestHead(t *testing.T) {
	srv := startMirrors(t, 1)
	set, _ := newSet(t, testOptions(), srv...)
	req := pkgReq()
	req.Method = http.MethodHead
	resp, got, err := fetchAll(t, set, req)
	if err != nil {
		t.Fatalf("Fetch(HEAD): %v", err)
	}
	if resp.Size != int64(len(pkgData)) || len(got) != 0 {
		t.Errorf("HEAD: Size %d, body %d bytes; want Size %d and no body", resp.Size, len(got), len(pkgData))
	}
	for _, e := range srv[0].Log() {
		if e.Method != http.MethodHead {
			t.Errorf("server saw %s %s, want only HEAD", e.Method, e.Path)
		}
	}
}

func TestFailover(t *testing.T) {
	tests := []struct {
		name   string
		breakA func(a *faultserver.Server)
	}{
		{"5xx", func(a *faultserver.Server) { a.SetFault(pkgPath, faultserver.Fault{Status: 503}) }},
		{"403", func(a *faultserver.Server) { a.SetFault(pkgPath, faultserver.Fault{Status: 403}) }},
		{"unasked 304", func(a *faultserver.Server) { a.SetFault(pkgPath, faultserver.Fault{Status: 304}) }},
		{"connection refused", func(a *faultserver.Server) { a.Close() }},
		{"connection dropped", func(a *faultserver.Server) { a.SetFault(pkgPath, faultserver.Fault{Drop: true}) }},
		{"header timeout", func(a *faultserver.Server) {
			a.SetFault(pkgPath, faultserver.Fault{Delay: time.Minute})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			tc.breakA(srv[0])
			opts := testOptions()
			if tc.name == "header timeout" {
				opts.HeaderTimeout = quickStall
			}
			set, _ := newSet(t, opts, srv...)
			resp, got, err := fetchAll(t, set, pkgReq())
			if err != nil {
				t.Fatalf("Fetch with A broken (%s): %v", tc.name, err)
			}
			sameBytes(t, got, pkgData)
			if resp.Mirror != label(srv[1]) {
				t.Errorf("Response.Mirror = %s, want B %s", resp.Mirror, label(srv[1]))
			}
			h := set.Health()
			if h[0].Mirror != label(srv[1]) || h[1].Healthy || h[1].LastError == "" {
				t.Errorf("Health() = %+v, want B first and A unhealthy with its error", h)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name    string
		fault   faultserver.Fault
		retries int
		wantA   int // requests A sees
	}{
		{"5xx retried", faultserver.Fault{Status: 503}, 2, 3},
		{"5xx no retries", faultserver.Fault{Status: 500}, 0, 1},
		{"501 not retried", faultserver.Fault{Status: 501}, 2, 1},
		{"404 not retried", faultserver.Fault{Status: 404}, 2, 1},
		{"403 not retried", faultserver.Fault{Status: 403}, 2, 1},
		{"dropped connection retried", faultserver.Fault{Drop: true}, 1, 2},
		{"transient 5xx recovers on A", faultserver.Fault{Status: 502, Times: 1}, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			srv[0].SetFault(pkgPath, tc.fault)
			opts := testOptions()
			opts.Retries = tc.retries
			set, _ := newSet(t, opts, srv...)
			_, got, err := fetchAll(t, set, pkgReq())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			sameBytes(t, got, pkgData)
			if n := srv[0].Requests(pkgPath); n != tc.wantA {
				t.Errorf("mirror A saw %d requests, want %d", n, tc.wantA)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	srv := startMirrors(t, 2)
	set, _ := newSet(t, testOptions(), srv...)
	_, err := set.Fetch(t.Context(), Request{Repo: testRepo, Arch: testArch, File: "nope.pkg.tar.zst"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch(missing everywhere) = %v, want ErrNotFound", err)
	}
	for i, s := range srv {
		if n := s.Total(); n != 1 {
			t.Errorf("mirror %d saw %d requests, want 1 (404 is not retried)", i, n)
		}
	}
	if h := set.Health(); !h[0].Healthy || !h[1].Healthy {
		t.Errorf("Health() after 404s = %+v, want both healthy", h)
	}
}

func TestNotFoundOnOneMirror(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{Status: 404})
	set, _ := newSet(t, testOptions(), srv...)
	_, got, err := fetchAll(t, set, pkgReq())
	if err != nil {
		t.Fatalf("Fetch with A lagging: %v", err)
	}
	sameBytes(t, got, pkgData)
}

func TestEveryMirrorFails(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{Status: 404})
	srv[1].SetFault(pkgPath, faultserver.Fault{Status: 503})
	set, _ := newSet(t, testOptions(), srv...)
	_, err := set.Fetch(t.Context(), pkgReq())
	if err == nil {
		t.Fatal("Fetch with every mirror failing succeeded")
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("Fetch(404 on A, 503 on B) = %v, want not ErrNotFound (B may have it)", err)
	}
	var se *StatusError
	if !errors.As(err, &se) {
		t.Errorf("Fetch error %v holds no StatusError", err)
	}
	for _, s := range srv {
		if !strings.Contains(err.Error(), label(s)) {
			t.Errorf("error %q does not name mirror %s", err, label(s))
		}
	}
	if _, ok := err.(interface{ Unwrap() []error }); !ok {
		t.Errorf("error %T is not an errors.Join", err)
	}
}

func TestNotModified(t *testing.T) {
	tests := []struct {
		name string
		req  func(r *Request, etag string)
	}{
		{"if-modified-since", func(r *Request, _ string) { r.IfModifiedSince = mtime }},
		{"if-none-match", func(r *Request, etag string) { r.IfNoneMatch = etag }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			set, _ := newSet(t, testOptions(), srv...)
			head := dbReq()
			head.Method = http.MethodHead
			first, err := set.Fetch(t.Context(), head)
			if err != nil {
				t.Fatal(err)
			}
			req := dbReq()
			tc.req(&req, first.ETag)
			_, err = set.Fetch(t.Context(), req)
			if !errors.Is(err, ErrNotModified) {
				t.Fatalf("conditional Fetch = %v, want ErrNotModified", err)
			}
			if n := srv[0].Total() + srv[1].Total(); n != 2 {
				t.Errorf("mirrors saw %d requests, want 2 (a 304 ends the fetch)", n)
			}
		})
	}
}

func TestModifiedSince(t *testing.T) {
	srv := startMirrors(t, 1)
	set, _ := newSet(t, testOptions(), srv...)
	req := dbReq()
	req.IfModifiedSince = mtime.Add(-time.Hour)
	_, got, err := fetchAll(t, set, req)
	if err != nil {
		t.Fatalf("Fetch(modified since an hour before): %v", err)
	}
	sameBytes(t, got, dbData)
	if ims := srv[0].Log()[0].Header.Get("If-Modified-Since"); ims != mtime.Add(-time.Hour).Format(http.TimeFormat) {
		t.Errorf("If-Modified-Since sent = %q", ims)
	}
}

// TestResume breaks mirror A in the middle of a package body and checks the
// body continues on B from the exact offset, byte for byte.
func TestResume(t *testing.T) {
	const cut = 70_001
	tests := []struct {
		name      string
		a, b      faultserver.Fault
		wantRange string // the Range B must see; "" to skip the check
	}{
		{name: "reset", a: faultserver.Fault{ResetAfter: cut}, wantRange: "bytes=70001-"},
		{name: "short body", a: faultserver.Fault{ShortBody: cut}, wantRange: "bytes=70001-"},
		{name: "stall", a: faultserver.Fault{Gate: make(chan struct{}), GateAfter: cut}, wantRange: "bytes=70001-"},
		{name: "B ignores range", a: faultserver.Fault{ResetAfter: cut}, b: faultserver.Fault{IgnoreRange: true}},
		{name: "reset at first byte", a: faultserver.Fault{ResetAfter: 1}, wantRange: "bytes=1-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			srv[0].SetFault(pkgPath, tc.a)
			srv[1].SetFault(pkgPath, tc.b)
			set, reg := newSet(t, stallOptions(tc.a), srv...)
			resp, got, err := fetchAll(t, set, pkgReq())
			if err != nil {
				t.Fatalf("resumable fetch with A broken: %v", err)
			}
			sameBytes(t, got, pkgData)
			if resp.Mirror != label(srv[0]) {
				t.Errorf("Response.Mirror = %s, want A %s (which answered first)", resp.Mirror, label(srv[0]))
			}
			logB := srv[1].Log()
			if len(logB) != 1 {
				t.Fatalf("B saw %d requests, want 1", len(logB))
			}
			if tc.wantRange != "" && logB[0].Range != tc.wantRange {
				t.Errorf("B saw Range %q, want %q", logB[0].Range, tc.wantRange)
			}
			if v := metricValue(t, reg, "mirrord_upstream_failovers_total", label(srv[0]), ""); v != 1 {
				t.Errorf("failovers_total{mirror=A} = %v, want 1", v)
			}
		})
	}
}

func TestResumeRefusesOtherFile(t *testing.T) {
	other := append(bytes.Clone(pkgData), 'x')
	tests := []struct {
		name    string
		bData   []byte
		bFault  faultserver.Fault
		wantErr string
	}{
		{"other size, range", other, faultserver.Fault{}, "-byte file"},
		{"other size, ignores range", other, faultserver.Fault{IgnoreRange: true}, "-byte file"},
		{"unknown size", pkgData, faultserver.Fault{IgnoreRange: true, Chunked: true}, "no Content-Length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := faultserver.NewTest(t, defaultTree(t))
			b := faultserver.NewTest(t, writeTree(t, map[string][]byte{pkgPath: tc.bData}))
			a.SetFault(pkgPath, faultserver.Fault{ResetAfter: 50_000, Times: 1, Then: &faultserver.Fault{Status: 503}})
			b.SetFault(pkgPath, tc.bFault)
			set, _ := newSet(t, testOptions(), a, b)
			_, got, err := fetchAll(t, set, pkgReq())
			if err == nil {
				t.Fatalf("fetch spliced A and B's file without error (%d bytes)", len(got))
			}
			if len(got) != 50_000 || !bytes.Equal(got, pkgData[:len(got)]) {
				t.Errorf("delivered %d bytes before the error, want A's first 50000 exactly", len(got))
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not say %q", err, tc.wantErr)
			}
		})
	}
}

func TestResumeChain(t *testing.T) {
	srv := startMirrors(t, 3)
	srv[0].SetFault(pkgPath, faultserver.Fault{ResetAfter: 10_000})
	srv[1].SetFault(pkgPath, faultserver.Fault{ResetAfter: 20_000}) // counts from its range start
	set, _ := newSet(t, testOptions(), srv...)
	_, got, err := fetchAll(t, set, pkgReq())
	if err != nil {
		t.Fatalf("fetch across three mirrors: %v", err)
	}
	sameBytes(t, got, pkgData)
	if r := srv[2].Log()[0].Range; r != "bytes=30000-" {
		t.Errorf("third mirror saw Range %q, want bytes=30000-", r)
	}
}

func TestResumeGivesUp(t *testing.T) {
	tests := []struct {
		name      string
		a, b      faultserver.Fault
		delivered int
		requests  int
		wantErr   string
	}{
		{
			name: "every mirror fails without progress",
			a:    faultserver.Fault{ResetAfter: 10_000, Times: 1, Then: &faultserver.Fault{Status: 503}},
			b:    faultserver.Fault{Status: 503},
			// A breaks at 10000, B and then A answer 503: nothing left.
			delivered: 10_000, requests: 3, wantErr: "status 503",
		},
		{
			name: "resume budget",
			a:    faultserver.Fault{ResetAfter: 10_000},
			b:    faultserver.Fault{ResetAfter: 10_000},
			// Each attempt makes progress; 4 per mirror + 4 = 12 resumes.
			delivered: 130_000, requests: 13, wantErr: "gave up after 12 resumes",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			srv[0].SetFault(pkgPath, tc.a)
			srv[1].SetFault(pkgPath, tc.b)
			set, _ := newSet(t, testOptions(), srv...)
			_, got, err := fetchAll(t, set, pkgReq())
			if err == nil {
				t.Fatal("fetch ended without error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not say %q", err, tc.wantErr)
			}
			if len(got) != tc.delivered || !bytes.Equal(got, pkgData[:len(got)]) {
				t.Errorf("delivered %d bytes, want the file's first %d", len(got), tc.delivered)
			}
			if n := srv[0].Requests(pkgPath) + srv[1].Requests(pkgPath); n != tc.requests {
				t.Errorf("mirrors saw %d requests, want %d", n, tc.requests)
			}
		})
	}
}

// TestResumeBackOnFirstMirror: A breaks, B breaks further on, and A (now
// fine) finishes the file: one body may come back to a mirror.
func TestResumeBackOnFirstMirror(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{ResetAfter: 50_000, Times: 1})
	srv[1].SetFault(pkgPath, faultserver.Fault{ResetAfter: 70_000, Times: 1})
	set, _ := newSet(t, testOptions(), srv...)
	_, got, err := fetchAll(t, set, pkgReq())
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	sameBytes(t, got, pkgData)
	if log := srv[0].Log(); len(log) != 2 || log[1].Range != "bytes=120000-" {
		t.Errorf("A's log = %+v, want a second request with Range bytes=120000-", log)
	}
}

// TestResumeSingleMirror: with one mirror, a broken body resumes on it.
func TestResumeSingleMirror(t *testing.T) {
	srv := startMirrors(t, 1)
	srv[0].SetFault(pkgPath, faultserver.Fault{ResetAfter: 50_000, Times: 1})
	set, _ := newSet(t, testOptions(), srv...)
	_, got, err := fetchAll(t, set, pkgReq())
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	sameBytes(t, got, pkgData)
	if log := srv[0].Log(); len(log) != 2 || log[1].Range != "bytes=50000-" {
		t.Errorf("log = %+v, want a second request with Range bytes=50000-", log)
	}
}

// TestBrokenBodyNotResumable checks a mutable file's broken body is an error
// from Read, never a clean EOF, and is not resumed elsewhere.
func TestBrokenBodyNotResumable(t *testing.T) {
	tests := []struct {
		name  string
		fault faultserver.Fault
	}{
		{"reset", faultserver.Fault{ResetAfter: 1000}},
		{"short body", faultserver.Fault{ShortBody: 1000}},
		{"stall", faultserver.Fault{Gate: make(chan struct{}), GateAfter: 1000}},
		{"chunked reset", faultserver.Fault{Chunked: true, ResetAfter: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMirrors(t, 2)
			srv[0].SetFault(dbPath, tc.fault)
			set, _ := newSet(t, stallOptions(tc.fault), srv...)
			_, got, err := fetchAll(t, set, dbReq())
			if err == nil {
				t.Fatalf("broken body read to a clean EOF after %d bytes", len(got))
			}
			if len(got) != 1000 || !bytes.Equal(got, dbData[:1000]) {
				t.Errorf("delivered %d bytes, want the file's first 1000", len(got))
			}
			if n := srv[1].Total(); n != 0 {
				t.Errorf("B saw %d requests, want 0 (mutable files are not resumed)", n)
			}
			if h := set.Health(); h[0].Mirror != label(srv[1]) {
				t.Errorf("Health()[0] = %s, want B after A broke mid-body", h[0].Mirror)
			}
		})
	}
}

func TestShortBodyIsUnexpectedEOF(t *testing.T) {
	srv := startMirrors(t, 1)
	srv[0].SetFault(dbPath, faultserver.Fault{ShortBody: 10})
	set, _ := newSet(t, testOptions(), srv...)
	_, _, err := fetchAll(t, set, dbReq())
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestStallError(t *testing.T) {
	srv := startMirrors(t, 1)
	f := faultserver.Fault{Gate: make(chan struct{}), GateAfter: 10}
	srv[0].SetFault(dbPath, f)
	set, _ := newSet(t, stallOptions(f), srv...)
	_, _, err := fetchAll(t, set, dbReq())
	if !errors.Is(err, errStalled) {
		t.Errorf("stalled body error = %v, want errStalled", err)
	}
}

func TestChunked(t *testing.T) {
	for _, resumable := range []bool{false, true} {
		srv := startMirrors(t, 1)
		srv[0].SetFault(pkgPath, faultserver.Fault{Chunked: true})
		set, _ := newSet(t, testOptions(), srv...)
		req := pkgReq()
		req.Resumable = resumable
		resp, got, err := fetchAll(t, set, req)
		if err != nil {
			t.Fatalf("chunked fetch (resumable %v): %v", resumable, err)
		}
		if resp.Size != -1 {
			t.Errorf("chunked Size = %d, want -1", resp.Size)
		}
		sameBytes(t, got, pkgData)
	}
}

// TestChunkedBreakNotResumed: without a size a resumed body could not be
// checked, so a broken chunked body is an error even when resumable.
func TestChunkedBreakNotResumed(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{Chunked: true, ResetAfter: 5000})
	set, _ := newSet(t, testOptions(), srv...)
	_, _, err := fetchAll(t, set, pkgReq())
	if err == nil {
		t.Fatal("broken chunked body ended cleanly")
	}
	if n := srv[1].Total(); n != 0 {
		t.Errorf("B saw %d requests, want 0", n)
	}
}

// TestSlowTrickleIsNotAStall: a steady transfer slower than the file's
// size over the stall timeout still completes.
func TestSlowTrickleIsNotAStall(t *testing.T) {
	srv := startMirrors(t, 1)
	srv[0].SetFault(dbPath, faultserver.Fault{Rate: 4000}) // 5000 bytes in ~1.25s, a step each 50ms
	opts := testOptions()
	opts.StallTimeout = 600 * time.Millisecond // each step well inside, the whole outside
	set, _ := newSet(t, opts, srv...)
	_, got, err := fetchAll(t, set, dbReq())
	if err != nil {
		t.Fatalf("trickled fetch: %v", err)
	}
	sameBytes(t, got, dbData)
}

// TestSlowReaderIsNotAStall: the watchdog measures the mirror, not the
// caller: a caller that pauses longer than the stall timeout between reads
// does not break the body.
func TestSlowReaderIsNotAStall(t *testing.T) {
	srv := startMirrors(t, 1)
	opts := testOptions()
	opts.StallTimeout = 100 * time.Millisecond
	set, _ := newSet(t, opts, srv...)
	resp, err := set.Fetch(t.Context(), dbReq())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the caller being slow is what is tested
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read after a slow caller: %v", err)
	}
	sameBytes(t, append(head, rest...), dbData)
}

func TestCancelMidBody(t *testing.T) {
	srv := startMirrors(t, 2)
	gate := make(chan struct{})
	srv[0].SetFault(pkgPath, faultserver.Fault{Gate: gate, GateAfter: 1000})
	set, _ := newSet(t, testOptions(), srv...)
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := set.Fetch(ctx, pkgReq())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	<-srv[0].Seen(pkgPath, 1)
	cancel()
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel = %v, want context.Canceled", err)
	}
	if n := srv[1].Total(); n != 0 {
		t.Errorf("B saw %d requests after the caller canceled, want 0", n)
	}
	if h := set.Health(); h[0].Errors+h[1].Errors != 0 {
		t.Errorf("Health() after a cancel = %+v, want no errors charged", h)
	}
}

func TestRankingSinksFailingMirror(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(faultserver.AnyPath, faultserver.Fault{Status: 500})
	set, _ := newSet(t, testOptions(), srv...)
	for range 3 {
		if _, _, err := fetchAll(t, set, dbReq()); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv[0].Total(); n != 1 {
		t.Errorf("failing mirror A was asked %d times in 3 fetches, want 1 (then it sinks)", n)
	}
	if n := srv[1].Total(); n != 3 {
		t.Errorf("healthy mirror B was asked %d times, want 3", n)
	}
	// After the cooldown A is tried again (and, still failing, sinks for longer).
	now := time.Now()
	if r := set.rank(now.Add(2 * time.Minute)); r[0].label != label(srv[0]) {
		t.Errorf("rank after cooldown = %s first, want A back", r[0].label)
	}
}

func TestRankByMeasure(t *testing.T) {
	c, err := NewClient(testOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	set, err := c.Mirrors([]string{"http://slow.example/$repo", "http://fast.example/$repo", "http://new.example/$repo", "http://bad.example/$repo", "http://worse.example/$repo"})
	if err != nil {
		t.Fatal(err)
	}
	slow, fast, bad, worse := set.mirrors[0], set.mirrors[1], set.mirrors[3], set.mirrors[4]
	slow.answered(50 * time.Millisecond)
	slow.transferred(10<<20, 10*time.Second) // 1 MiB/s
	fast.answered(80 * time.Millisecond)
	fast.transferred(10<<20, time.Second) // 10 MiB/s
	now := time.Now()
	bad.failed(errors.New("boom"), now)
	worse.failed(errors.New("boom"), now)
	worse.failed(errors.New("boom"), now)
	var got []string
	for _, m := range set.rank(now) {
		got = append(got, m.label)
	}
	want := []string{"new.example:80", "fast.example:80", "slow.example:80", "bad.example:80", "worse.example:80"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rank() = %v, want %v", got, want)
	}
	// bad's cooldown (1 min) has passed at +90s, worse's doubled one has not.
	got = got[:0]
	for _, m := range set.rank(now.Add(90 * time.Second)) {
		got = append(got, m.label)
	}
	if got[len(got)-1] != "worse.example:80" || got[0] != "new.example:80" {
		t.Errorf("rank(+90s) = %v, want worse.example last", got)
	}
	if bad.answered(time.Millisecond); set.Health()[len(set.mirrors)-1].Mirror != "worse.example:80" {
		t.Errorf("Health() = %+v, want worse.example last", set.Health())
	}
}

func TestFileURL(t *testing.T) {
	tests := []struct {
		name     string
		template string
		req      Request
		want     string
	}{
		{"arch layout", "http://m.example/archlinux/$repo/os/$arch", Request{Repo: "core", Arch: "x86_64", File: "core.db"},
			"http://m.example/archlinux/core/os/x86_64/core.db"},
		{"trailing slash", "http://m.example/$repo/os/$arch/", Request{Repo: "extra", Arch: "x86_64", File: "extra.db"},
			"http://m.example/extra/os/x86_64/extra.db"},
		{"arm layout", "http://m.example/$arch/$repo", Request{Repo: "alarm", Arch: "aarch64", File: "alarm.db"},
			"http://m.example/aarch64/alarm/alarm.db"},
		{"no repo in template", "http://m.example/archlinuxcn/$arch", Request{Repo: "archlinuxcn", Arch: "x86_64", File: "archlinuxcn.db"},
			"http://m.example/archlinuxcn/x86_64/archlinuxcn.db"},
		{"arch before repo, as pacman", "http://m.example/$repo/os/$arch", Request{Repo: "$arch", Arch: "x86_64", File: "f"},
			"http://m.example/$arch/os/x86_64/f"},
		{"substring arch", "http://m.example/repo/$arch_v3/$repo", Request{Repo: "cachyos-v3", Arch: "x86_64", File: "f"},
			"http://m.example/repo/x86_64_v3/cachyos-v3/f"},
		{"epoch colon and plus kept", "http://m.example/$repo/os/$arch", Request{Repo: "extra", Arch: "x86_64", File: "gtk+-1:2.0-1-x86_64.pkg.tar.zst"},
			"http://m.example/extra/os/x86_64/gtk+-1:2.0-1-x86_64.pkg.tar.zst"},
		{"odd characters escaped", "http://m.example/$repo/os/$arch", Request{Repo: "extra", Arch: "x86_64", File: "a b#c?.sig"},
			"http://m.example/extra/os/x86_64/a%20b%23c%3F.sig"},
		{"base file", "http://m.example/archlinux/$repo/os/$arch", Request{File: "lastupdate"},
			"http://m.example/archlinux/lastupdate"},
		{"base file, arm", "https://m.example:8443/arm/$arch/$repo/", Request{File: "lastsync"},
			"https://m.example:8443/arm/lastsync"},
		{"base file, no variables", "http://m.example/mirror", Request{File: "lastsync"},
			"http://m.example/mirror/lastsync"},
		{"pool path", "http://m.example/archlinux/$repo/os/$arch", Request{File: "pool/packages/x.pkg.tar.zst"},
			"http://m.example/archlinux/pool/packages/x.pkg.tar.zst"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseMirror(tc.template)
			if err != nil {
				t.Fatalf("parseMirror(%q): %v", tc.template, err)
			}
			got, err := m.fileURL(&tc.req)
			if err != nil || got != tc.want {
				t.Errorf("fileURL(%q, %+v) = %q, %v; want %q", tc.template, tc.req, got, err, tc.want)
			}
		})
	}
}

func TestParseMirrorLabel(t *testing.T) {
	tests := []struct{ template, want string }{
		{"http://m.example/$repo", "m.example:80"},
		{"https://m.example/$repo", "m.example:443"},
		{"http://127.0.0.1:1234/$repo", "127.0.0.1:1234"},
		{"http://[::1]:99/$repo", "[::1]:99"},
	}
	for _, tc := range tests {
		m, err := parseMirror(tc.template)
		if err != nil || m.label != tc.want {
			t.Errorf("parseMirror(%q).label = %q, %v; want %q", tc.template, m.label, err, tc.want)
		}
	}
}

func TestBadInput(t *testing.T) {
	c, err := NewClient(testOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tmpl := range [][]string{nil, {""}, {"ftp://m.example/$repo"}, {"http:///x"}, {"http://m.example/$repo?x=1"}, {"://"}} {
		if _, err := c.Mirrors(tmpl); err == nil {
			t.Errorf("Mirrors(%q) = nil error, want one", tmpl)
		}
	}
	set, err := c.Mirrors([]string{"http://127.0.0.1:1/$repo/os/$arch"})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []Request{
		{Repo: "core", Arch: "x86_64"},
		{Repo: "core", Arch: "x86_64", File: "../x"},
		{Repo: "core", Arch: "x86_64", File: "/x"},
		{Repo: "core", Arch: "x86_64", File: "a//b"},
		{Repo: "core", Arch: "x86_64", File: "x", Method: "POST"},
	} {
		if _, err := set.Fetch(t.Context(), req); err == nil {
			t.Errorf("Fetch(%+v) = nil error, want one", req)
		}
	}
	for _, o := range []Options{{Retries: -1}, {StallTimeout: -time.Second}} {
		if _, err := NewClient(o, nil); err == nil {
			t.Errorf("NewClient(%+v) = nil error, want one", o)
		}
	}
}

func TestMetrics(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{Status: 503})
	opts := testOptions()
	opts.Retries = 1
	set, reg := newSet(t, opts, srv...)
	a, b := label(srv[0]), label(srv[1])
	// Known mirrors exist at zero before any request.
	if v := metricValue(t, reg, "mirrord_upstream_requests_total", b, "not_modified"); v != 0 {
		t.Fatalf("requests_total{mirror=B,result=not_modified} = %v, want a series at 0", v)
	}
	if _, _, err := fetchAll(t, set, pkgReq()); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Fetch(t.Context(), Request{Repo: testRepo, Arch: testArch, File: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch(nope) = %v", err)
	}
	checks := []struct {
		name, mirror, result string
		want                 float64
	}{
		{"mirrord_upstream_requests_total", a, "error", 2}, // the try and its retry
		{"mirrord_upstream_requests_total", b, "ok", 1},
		{"mirrord_upstream_requests_total", b, "not_found", 1},
		{"mirrord_upstream_bytes_total", b, "", float64(len(pkgData))},
		{"mirrord_upstream_bytes_total", a, "", 0},
		{"mirrord_upstream_failovers_total", a, "", 1},
		{"mirrord_upstream_request_duration_seconds", b, "", 2}, // sample count
	}
	for _, c := range checks {
		if got := metricValue(t, reg, c.name, c.mirror, c.result); got != c.want {
			t.Errorf("%s{mirror=%s,result=%q} = %v, want %v", c.name, c.mirror, c.result, got, c.want)
		}
	}
}

// metricValue returns a counter's or gauge's value or a histogram's sample count for
// the series with the given mirror (and result, when not empty); it fails
// the test when the series does not exist.
func metricValue(t *testing.T, reg *prometheus.Registry, name, mirror, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if (lp.GetName() == "mirror" && lp.GetValue() != mirror) || (lp.GetName() == "result" && lp.GetValue() != result) {
					continue series
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s{mirror=%s,result=%q}", name, mirror, result)
	return 0
}

// TestConcurrentFetches runs fetches, health reads and fault changes at
// once, for the race detector: ranking and health must be safe without a
// lock held across I/O.
func TestConcurrentFetches(t *testing.T) {
	srv := startMirrors(t, 2)
	srv[0].SetFault(pkgPath, faultserver.Fault{ResetAfter: 30_000})
	opts := testOptions()
	opts.Cooldown = time.Nanosecond // let the broken mirror back in at once
	set, _ := newSet(t, opts, srv...)
	errc := make(chan error, 16)
	for i := range 16 {
		go func() {
			for range 4 {
				req := pkgReq()
				if i%2 == 1 {
					req = dbReq()
				}
				_, got, err := fetchAll(t, set, req)
				if err == nil && req.Resumable && !bytes.Equal(got, pkgData) {
					err = errors.New("package bytes differ")
				}
				if err == nil && !req.Resumable && !bytes.Equal(got, dbData) {
					err = errors.New("db bytes differ")
				}
				if err != nil {
					errc <- err
					return
				}
				set.Health()
			}
			errc <- nil
		}()
	}
	for range 16 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// TestHealthSharedPerMirror: two sets that name a template share its one
// health record, so a mirror that failed for one (the proxy's set, say)
// ranks last in the other (the sync's) without failing there again.
func TestHealthSharedPerMirror(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/$repo/os/$arch"
	ln.Close() // connections are refused from here on
	c, err := NewClient(Options{Retries: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	proxySet, err := c.Mirrors([]string{dead})
	if err != nil {
		t.Fatal(err)
	}
	good := "http://127.0.0.1:1/$repo/os/$arch"
	syncSet, err := c.Mirrors([]string{dead, good})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxySet.Fetch(context.Background(), Request{Repo: "core", Arch: "x86_64", File: "core.db"}); err == nil {
		t.Fatal("fetch from a closed port succeeded")
	}
	h := syncSet.Health()
	if h[0].URL != good || h[1].URL != dead || h[1].Healthy || h[1].ConsecutiveFailures != 1 {
		t.Fatalf("the other set's health after one failure: %+v", h)
	}
}
