package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/logtest"
)

// slogLine is e's line as slog's handler of format writes it, with the
// attributes in the order Log writes them; time is left out.
func slogLine(format string, e *Entry) string {
	var buf bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}}
	var h slog.Handler = slog.NewTextHandler(&buf, opts)
	if format == "json" {
		h = slog.NewJSONHandler(&buf, opts)
	}
	attrs := []slog.Attr{slog.String("component", "access"), slog.String("remote", e.Remote), slog.String("method", e.Method),
		slog.String("path", e.Path), slog.Int("status", e.Status), slog.Int64("bytes", e.Bytes), slog.Duration("duration", e.Duration)}
	if e.Result != "" {
		attrs = append(attrs, slog.String("result", e.Result))
	}
	attrs = append(attrs, slog.String("user_agent", string(e.UserAgent)))
	slog.New(h).LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
	return buf.String()
}

// withoutTime drops the line's time attribute, which slogLine leaves out.
func withoutTime(format, line string) string {
	if format == "json" {
		_, rest, _ := strings.Cut(line, `","`)
		return `{"` + rest
	}
	_, rest, _ := strings.Cut(line, " ")
	return rest
}

func checkLikeSlog(t *testing.T, e *Entry) {
	t.Helper()
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		l := New(&out, format)
		l.Log(e)
		l.Flush()
		if got, want := withoutTime(format, out.String()), slogLine(format, e); got != want {
			t.Errorf("%s line\n got %q\nwant %q (slog's)", format, got, want)
		}
	}
}

func TestLinesAreSlogs(t *testing.T) {
	base := Entry{Remote: "127.0.0.1:40312", Method: "GET", Path: "/archlinux/core/os/x86_64/core.db", Status: 200,
		Bytes: 131072, Duration: 1234567 * time.Nanosecond, Result: "hit", UserAgent: []byte("pacman/6.0.2 (Linux x86_64) libalpm/13.0.2")}
	for _, ua := range []string{"", "curl/8.5.0", `a "quoted" = value`, "tab\there", "nl\nline", "ünïcödé", "\xff\xfe bad utf-8",
		"\u2028sep\u2029", "del\x7f", `back\slash`, "\x00\x01", "non\u00a0break"} {
		e := base
		e.UserAgent = []byte(ua)
		checkLikeSlog(t, &e)
	}
	e := base
	e.Result, e.Status, e.Bytes, e.Path = "", 404, 0, "/api/v1/status?x=1&y=<2>"
	checkLikeSlog(t, &e)
}

func FuzzLinesAreSlogs(f *testing.F) {
	f.Add("/a/b", "pacman/6.0.2", "127.0.0.1:1")
	f.Add("/x=y z", "\xff\u2028", "[::1]:80")
	f.Fuzz(func(t *testing.T, path, ua, remote string) {
		checkLikeSlog(t, &Entry{Remote: remote, Method: "GET", Path: path, Status: 200, Result: "miss", UserAgent: []byte(ua)})
	})
}

// A JSON line is one object with each key once.
func TestJSONKeysOnce(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, "json")
	l.Log(&Entry{Remote: "r", Method: "GET", Path: "/p", Status: 200, Result: "hit", UserAgent: []byte("ua")})
	l.Flush()
	keys, err := logtest.JSONKeys(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"time", "level", "msg", "component", "remote", "method", "path", "status", "bytes", "duration", "result", "user_agent"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

// Lines wait in the buffer until FlushEvery, or until it is full.
func TestBuffered(t *testing.T) {
	w := &signalWriter{wrote: make(chan []byte, 10)}
	l := New(w, "text")
	start := time.Now()
	l.Log(&Entry{Method: "GET", Path: "/one"})
	l.Log(&Entry{Method: "GET", Path: "/two"})
	got := <-w.wrote
	if el := time.Since(start); el < FlushEvery/2 {
		t.Errorf("written after %v, want about %v", el, FlushEvery)
	}
	if n := bytes.Count(got, []byte("\n")); n != 2 {
		t.Errorf("one write of %d lines, want both: %q", n, got)
	}
	long := strings.Repeat("x", 1000)
	for range flushAt / 1000 {
		l.Log(&Entry{Method: "GET", Path: long})
	}
	select {
	case b := <-w.wrote:
		if len(b) < flushAt {
			t.Errorf("a full buffer wrote %d bytes", len(b))
		}
	case <-time.After(FlushEvery / 4):
		t.Error("a full buffer waits for the timer")
	}
}

type signalWriter struct{ wrote chan []byte }

func (w *signalWriter) Write(p []byte) (int, error) {
	w.wrote <- bytes.Clone(p)
	return len(p), nil
}

// Handler logs status, bytes and the result the handler set, and keeps
// ReadFrom for file bodies.
func TestHandler(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, "json")
	h := Handler(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetResult(r.Context(), "miss")
		w.WriteHeader(http.StatusTeapot)
		io.Copy(w, strings.NewReader("twelve bytes"))
	}))
	req := httptest.NewRequest("GET", "/a/b?c", nil)
	req.Header.Set("User-Agent", "test/1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	l.Flush()
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	want := map[string]any{"path": "/a/b?c", "status": 418.0, "bytes": 12.0, "result": "miss", "user_agent": "test/1", "method": "GET", "remote": "192.0.2.1:1234"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
}

func BenchmarkLog(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			l := New(io.Discard, format)
			e := &Entry{Remote: "127.0.0.1:40312", Method: "GET", Path: "/archlinux/core/os/x86_64/core.db", Status: 200,
				Bytes: 131072, Duration: 1234567, Result: "hit", UserAgent: []byte("pacman/6.0.2 (Linux x86_64) libalpm/13.0.2")}
			b.ReportAllocs()
			for b.Loop() {
				l.Log(e)
			}
		})
	}
}

func BenchmarkLogParallel(b *testing.B) {
	l := New(io.Discard, "text")
	b.RunParallel(func(pb *testing.PB) {
		e := &Entry{Remote: "127.0.0.1:40312", Method: "GET", Path: "/archlinux/core/os/x86_64/core.db", Status: 200,
			Bytes: 131072, Duration: 1234567, Result: "hit"}
		for pb.Next() {
			l.Log(e)
		}
	})
}

// A line's time is slog's: the text handler's millisecond layout, the
// JSON handler's RFC 3339 with nanoseconds, in the local zone.
func TestStamps(t *testing.T) {
	var c stamps
	base := time.Date(2026, 12, 2, 3, 4, 5, 0, time.Local)
	for _, ns := range []int{0, 1, 10, 999, 1e6, 123456789, 120000000, 999999999} {
		for _, sec := range []int{0, 1} { // the cached date, and a new second
			now := base.Add(time.Duration(sec)*time.Second + time.Duration(ns))
			if got, want := string(c.text(now)), now.Format("2006-01-02T15:04:05.000Z07:00"); got != want {
				t.Errorf("text %v = %q, want %q", now, got, want)
			}
			if got, want := string(c.json(now)), now.Format(time.RFC3339Nano); got != want {
				t.Errorf("json %v = %q, want %q", now, got, want)
			}
		}
	}
}

// blockingWriter holds every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// A writer that does not keep up costs lines, never the caller's time:
// Log returns while w is stuck, and once w takes lines again one line
// says how many were dropped.
func TestStuckWriterDropsLines(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l := New(w, "text")
	long := strings.Repeat("x", 1000)
	const n = 10 * flushAt / 1000 // ten buffers: more than the queue holds
	done := make(chan struct{})
	go func() {
		for range n {
			l.Log(&Entry{Method: "GET", Path: long})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Log blocked behind a stuck writer")
	}
	close(w.release)
	l.pending.Wait() // the writer took what was queued: w keeps up again
	l.Log(&Entry{Method: "GET", Path: "/after"})
	l.Flush()
	out := w.buf.String()
	kept := strings.Count(out, "msg=request")
	notices := regexp.MustCompile(`level=WARN msg="access log lines dropped[^"]*" component=access dropped=(\d+)`).FindAllStringSubmatch(out, -1)
	if notices == nil {
		t.Fatalf("no line says lines were dropped (%d of %d kept)", kept, n+1)
	}
	dropped := 0
	for _, m := range notices { // one after each run of drops
		d, _ := strconv.Atoi(m[1])
		dropped += d
	}
	if kept+dropped != n+1 || dropped == 0 {
		t.Errorf("%d lines kept and %d said dropped, want %d in all", kept, dropped, n+1)
	}
}
