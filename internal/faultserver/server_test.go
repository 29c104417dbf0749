package faultserver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const filePath = "/core/os/x86_64/core.db"

// content is 10000 bytes that differ from their neighbours, so an offset
// error or a splice shows in a comparison.
var content = func() []byte {
	b := make([]byte, 10000)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

var mtime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newServer(t *testing.T) *Server {
	t.Helper()
	root := t.TempDir()
	name := filepath.Join(root, filepath.FromSlash(filePath))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return NewTest(t, root)
}

func do(t *testing.T, s *Server, method, p string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A fresh transport per request keeps one test's broken connection from
	// leaking into the next request.
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestServe(t *testing.T) {
	lm := mtime.Format(http.TimeFormat)
	etag := fmt.Sprintf(`"%x-%x"`, mtime.Unix(), len(content))
	tests := []struct {
		name      string
		method    string
		path      string
		hdr       map[string]string
		status    int
		body      []byte
		header    map[string]string
		bodyEmpty bool
	}{
		{name: "get", method: "GET", path: filePath, status: 200, body: content,
			header: map[string]string{"Content-Length": "10000", "Last-Modified": lm, "ETag": etag, "Content-Type": "application/octet-stream"}},
		{name: "head", method: "HEAD", path: filePath, status: 200, bodyEmpty: true,
			header: map[string]string{"Content-Length": "10000", "Last-Modified": lm}},
		{name: "range", method: "GET", path: filePath, hdr: map[string]string{"Range": "bytes=100-"}, status: 206, body: content[100:],
			header: map[string]string{"Content-Range": "bytes 100-9999/10000", "Content-Length": "9900"}},
		{name: "range beyond end", method: "GET", path: filePath, hdr: map[string]string{"Range": "bytes=20000-"}, status: 416},
		{name: "not modified since", method: "GET", path: filePath, hdr: map[string]string{"If-Modified-Since": lm}, status: 304, bodyEmpty: true},
		{name: "modified since", method: "GET", path: filePath, hdr: map[string]string{"If-Modified-Since": mtime.Add(-time.Hour).Format(http.TimeFormat)}, status: 200, body: content},
		{name: "etag match", method: "GET", path: filePath, hdr: map[string]string{"If-None-Match": etag}, status: 304, bodyEmpty: true},
		{name: "etag mismatch", method: "GET", path: filePath, hdr: map[string]string{"If-None-Match": `"x"`}, status: 200, body: content},
		{name: "missing", method: "GET", path: "/core/os/x86_64/nope.pkg.tar.zst", status: 404},
		{name: "directory", method: "GET", path: "/core/os/x86_64/", status: 404},
		{name: "escape", method: "GET", path: "/../../etc/passwd", status: 404},
		{name: "post", method: "POST", path: filePath, status: 405},
	}
	s := newServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, s, tc.method, tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s status = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s header %s = %q, want %q", tc.method, tc.path, k, got, v)
				}
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if tc.body != nil && !bytes.Equal(body, tc.body) {
				t.Errorf("%s %s body: %d bytes, not the file's %d", tc.method, tc.path, len(body), len(tc.body))
			}
			if tc.bodyEmpty && len(body) != 0 {
				t.Errorf("%s %s body = %d bytes, want none", tc.method, tc.path, len(body))
			}
		})
	}
}

func TestStatusFaultTimes(t *testing.T) {
	s := newServer(t)
	s.SetFault(filePath, Fault{Status: 503, Times: 2})
	for i, want := range []int{503, 503, 200, 200} {
		resp := do(t, s, "GET", filePath, nil)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Errorf("request %d status = %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	if got := s.Requests(filePath); got != 4 {
		t.Errorf("Requests(%q) = %d, want 4", filePath, got)
	}
}

func TestFaultSequence(t *testing.T) {
	s := newServer(t)
	s.SetFault(filePath, Fault{Status: 500, Times: 1, Then: &Fault{Status: 404, Times: 2, Then: &Fault{Status: 503}}})
	for i, want := range []int{500, 404, 404, 503, 503} {
		if got := do(t, s, "GET", filePath, nil).StatusCode; got != want {
			t.Errorf("request %d status = %d, want %d", i+1, got, want)
		}
	}
}

func TestAnyPathAndClear(t *testing.T) {
	s := newServer(t)
	s.SetFault(AnyPath, Fault{Status: 500})
	s.SetFault("/lastsync", Fault{Status: 404})
	if got := do(t, s, "GET", filePath, nil).StatusCode; got != 500 {
		t.Errorf("GET %s with AnyPath fault = %d, want 500", filePath, got)
	}
	if got := do(t, s, "GET", "/lastsync", nil).StatusCode; got != 404 {
		t.Errorf("GET /lastsync with own fault = %d, want 404", got)
	}
	s.ClearFaults()
	if got := do(t, s, "GET", filePath, nil).StatusCode; got != 200 {
		t.Errorf("GET %s after ClearFaults = %d, want 200", filePath, got)
	}
}

// readAll reads the body and returns what arrived and the error that ended it.
func readAll(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	_, err := io.Copy(&buf, resp.Body)
	return buf.Bytes(), err
}

func TestBodyFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   Fault
		hdr     map[string]string
		status  int
		want    []byte // the bytes that must arrive
		wantErr bool   // the body must end in an error, not a clean EOF
		size    int64  // resp.ContentLength
	}{
		{name: "reset", fault: Fault{ResetAfter: 3000}, status: 200, want: content[:3000], wantErr: true, size: 10000},
		{name: "reset after range start", fault: Fault{ResetAfter: 100}, hdr: map[string]string{"Range": "bytes=5000-"}, status: 206, want: content[5000:5100], wantErr: true, size: 5000},
		{name: "short", fault: Fault{ShortBody: 4321}, status: 200, want: content[:4321], wantErr: true, size: 10000},
		{name: "chunked", fault: Fault{Chunked: true}, status: 200, want: content, size: -1},
		{name: "chunked reset", fault: Fault{Chunked: true, ResetAfter: 5000}, status: 200, want: content[:5000], wantErr: true, size: -1},
		{name: "ignore range", fault: Fault{IgnoreRange: true}, hdr: map[string]string{"Range": "bytes=5000-"}, status: 200, want: content, size: 10000},
		{name: "wrong 304", fault: Fault{Wrong304: true}, hdr: map[string]string{"If-Modified-Since": mtime.Add(-time.Hour).Format(http.TimeFormat)}, status: 304, want: []byte{}, size: 0},
		{name: "wrong 304 unconditional", fault: Fault{Wrong304: true}, status: 200, want: content, size: 10000},
		{name: "rate", fault: Fault{Rate: 100000}, status: 200, want: content, size: 10000},
		{name: "stall", fault: Fault{Stall: 50 * time.Millisecond, GateAfter: 10}, status: 200, want: content, size: 10000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.SetFault(filePath, tc.fault)
			resp := do(t, s, "GET", filePath, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if resp.ContentLength != tc.size {
				t.Errorf("ContentLength = %d, want %d", resp.ContentLength, tc.size)
			}
			got, err := readAll(resp)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("body: got %d bytes, want %d (equal: %v)", len(got), len(tc.want), bytes.Equal(got, tc.want[:min(len(got), len(tc.want))]))
			}
			if tc.wantErr && err == nil {
				t.Errorf("body ended cleanly after %d bytes, want an error", len(got))
			}
			if !tc.wantErr && err != nil {
				t.Errorf("body error = %v, want none", err)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	s := newServer(t)
	s.SetFault(filePath, Fault{Corrupt: true})
	got, err := readAll(do(t, s, "GET", filePath, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(content) {
		t.Fatalf("corrupt body = %d bytes, want %d", len(got), len(content))
	}
	for i := range got {
		if got[i] == content[i] {
			t.Fatalf("corrupt body byte %d unchanged", i)
		}
	}
}

func TestDrop(t *testing.T) {
	s := newServer(t)
	s.SetFault(filePath, Fault{Drop: true})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+filePath, nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET with Drop = %d, want a connection error", resp.StatusCode)
	}
	if log := s.Log(); len(log) != 1 || log[0].Status != 0 {
		t.Errorf("Log() = %+v, want one entry with status 0", log)
	}
}

func TestGateHoldsBody(t *testing.T) {
	s := newServer(t)
	gate := make(chan struct{})
	s.SetFault(filePath, Fault{Gate: gate, GateAfter: 1000})
	resp := do(t, s, "GET", filePath, nil)
	head := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("read the bytes before the gate: %v", err)
	}
	// The rest must not arrive while the gate is shut.
	more := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		more <- err
	}()
	select {
	case err := <-more:
		t.Fatalf("read past the gate while it was shut (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-more; err != nil {
		t.Fatalf("read after the gate opened: %v", err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, content[1000]), content[:1001]) || !bytes.Equal(rest, content[1001:]) {
		t.Errorf("gated body differs from the file")
	}
}

func TestCloseReleasesGate(t *testing.T) {
	s := newServer(t)
	s.SetFault(filePath, Fault{Gate: make(chan struct{})})
	resp := do(t, s, "GET", filePath, nil)
	<-s.Seen(filePath, 1)
	s.Close() // must not hang on the held response
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("body of a response cut by Close ended cleanly")
	}
	_, err := http.Get(s.URL() + filePath)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("GET after Close: err = %v, want connection refused", err)
	}
}

func TestAccounting(t *testing.T) {
	s := newServer(t)
	seen := s.Seen(filePath, 2)
	do(t, s, "HEAD", filePath, nil)
	select {
	case <-seen:
		t.Fatal("Seen(2) closed after one request")
	default:
	}
	do(t, s, "GET", filePath, map[string]string{"Range": "bytes=1-2", "User-Agent": "ua/1"})
	<-seen
	do(t, s, "GET", "/lastsync", nil)
	if got := s.Requests(filePath); got != 2 {
		t.Errorf("Requests(%q) = %d, want 2", filePath, got)
	}
	if got := s.Total(); got != 3 {
		t.Errorf("Total() = %d, want 3", got)
	}
	want := []Entry{
		{Method: "HEAD", Path: filePath, Status: 200},
		{Method: "GET", Path: filePath, Range: "bytes=1-2", Status: 206},
		{Method: "GET", Path: "/lastsync", Status: 404},
	}
	log := s.Log()
	if len(log) != len(want) {
		t.Fatalf("Log() has %d entries, want %d", len(log), len(want))
	}
	for i, w := range want {
		g := log[i]
		if g.Method != w.Method || g.Path != w.Path || g.Range != w.Range || g.Status != w.Status {
			t.Errorf("Log()[%d] = %s %s %q %d, want %s %s %q %d", i, g.Method, g.Path, g.Range, g.Status, w.Method, w.Path, w.Range, w.Status)
		}
	}
	if ua := log[1].Header.Get("User-Agent"); ua != "ua/1" {
		t.Errorf("Log()[1] User-Agent = %q, want %q", ua, "ua/1")
	}
	s.Reset()
	if s.Total() != 0 || s.Requests(filePath) != 0 || len(s.Log()) != 0 {
		t.Errorf("after Reset: Total %d, Requests %d, Log %d; want all 0", s.Total(), s.Requests(filePath), len(s.Log()))
	}
}
