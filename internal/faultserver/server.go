package faultserver

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// AnyPath is the SetFault key for a fault that applies to every path that
// has no fault of its own: a whole mirror that is down.
const AnyPath = "*"

// Fault describes what goes wrong for one path. The zero value is no fault;
// each field acts on its own and several combine (Rate with Chunked, Gate
// with ResetAfter). Offsets count body bytes of this response, so for a
// Range request they start at the range's first byte.
type Fault struct {
	// Status answers with this code and a short text body instead of the file.
	Status int
	// Drop closes the connection (with a TCP reset) before any response.
	Drop bool
	// Delay waits this long before sending the response headers.
	Delay time.Duration
	// ResetAfter sends this many body bytes, then resets the connection.
	ResetAfter int64
	// ShortBody declares the full Content-Length but sends only this many
	// bytes, then ends the response (the server closes the connection).
	ShortBody int64
	// Corrupt flips every bit of every body byte; sizes stay the same.
	Corrupt bool
	// Gate holds the body after GateAfter bytes (headers and those bytes are
	// flushed first) until the channel is closed or the client goes away.
	Gate <-chan struct{}
	// GateAfter is the body offset at which Gate and Stall pause.
	GateAfter int64
	// Stall pauses the body for this long after GateAfter bytes.
	Stall time.Duration
	// Rate trickles the body at about this many bytes per second.
	Rate int
	// Chunked drops Content-Length and sends Transfer-Encoding: chunked.
	Chunked bool
	// IgnoreRange answers 200 with the whole file to Range requests.
	IgnoreRange bool
	// Wrong304 answers 304 to every conditional request, modified or not.
	Wrong304 bool
	// Times applies the fault to this many requests, then clears it (or
	// moves on to Then); 0 means until ClearFaults or another SetFault.
	Times int
	// Then is the fault that follows once Times requests have had this one,
	// for sequences such as "break mid-body once, then answer 503".
	Then *Fault
}

// Entry is one request as the server saw it.
type Entry struct {
	Method string
	Path   string
	Range  string // the Range header, "" when absent
	Status int    // the status sent; 0 when the connection was dropped
	Header http.Header
}

// Server is a static mirror over a directory with faults. Its methods are
// safe for concurrent use, also while requests are in flight.
type Server struct {
	root    string
	ts      *httptest.Server // set by Start, before any request
	closing chan struct{}    // closed by Close: releases every pause
	closed  sync.Once

	mu      sync.Mutex // guards the fields below; never held across I/O
	faults  map[string]*armed
	counts  map[string]int
	total   int
	log     []Entry
	waiters []waiter
}

// armed is a fault with the number of uses left (0: unlimited).
type armed struct {
	f    Fault
	left int
}

// waiter is a Seen call waiting for a path's count to reach n.
type waiter struct {
	path string
	n    int
	ch   chan struct{}
}

// New returns a server for the files under root. It does not listen until
// Start; it is also an http.Handler for use in a server of the caller's.
func New(root string) *Server {
	return &Server{
		root:    root,
		closing: make(chan struct{}),
		faults:  make(map[string]*armed),
		counts:  make(map[string]int),
	}
}

// NewTest returns a started server over root that closes when the test ends.
func NewTest(t testing.TB, root string) *Server {
	t.Helper()
	s := New(root)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Start listens on 127.0.0.1 on a free port.
func (s *Server) Start() {
	s.ts = httptest.NewServer(s)
}

// URL is the base URL, "http://127.0.0.1:PORT", with no trailing slash.
func (s *Server) URL() string { return s.ts.URL }

// Addr is the listening host:port.
func (s *Server) Addr() string { return s.ts.Listener.Addr().String() }

// Root is the directory served.
func (s *Server) Root() string { return s.root }

// Close releases every paused response, then stops the server and waits
// for its handlers. Afterwards connections to URL are refused.
func (s *Server) Close() {
	s.closed.Do(func() { close(s.closing) })
	if s.ts != nil {
		s.ts.CloseClientConnections()
		s.ts.Close()
	}
}

// SetFault makes requests for p (a URL path such as "/core/os/x86_64/core.db",
// or AnyPath) fail as f says, replacing any earlier fault for p.
func (s *Server) SetFault(p string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[p] = &armed{f: f, left: f.Times}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// Requests is how many requests for the URL path p arrived (counted on
// arrival, before any fault or pause).
func (s *Server) Requests(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[p]
}

// Total is how many requests arrived for any path.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Log returns the requests that were answered (or dropped), in the order
// their headers went out. An entry is logged before its headers are sent,
// so a client that has a response always finds its entry.
func (s *Server) Log() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.log...)
}

// Reset zeroes the counters and the log; faults stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.total = 0
	s.log = nil
}

// Seen returns a channel closed once n requests for p have arrived, so a
// test can wait for a request to be in flight (e.g. held by a gate) without
// sleeping.
func (s *Server) Seen(p string, n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if s.counts[p] >= n {
		close(ch)
		return ch
	}
	s.waiters = append(s.waiters, waiter{path: p, n: n, ch: ch})
	return ch
}

// arrive counts a request for p and returns the fault to apply, using up
// one of its Times.
func (s *Server) arrive(p string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[p]++
	s.total++
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.path == p && s.counts[p] >= w.n {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	s.waiters = kept

	key := p
	a, ok := s.faults[key]
	if !ok {
		key = AnyPath
		if a, ok = s.faults[key]; !ok {
			return Fault{}, false
		}
	}
	if a.left > 0 {
		a.left--
		if a.left == 0 {
			if a.f.Then != nil {
				s.faults[key] = &armed{f: *a.f.Then, left: a.f.Then.Times}
			} else {
				delete(s.faults, key)
			}
		}
	}
	return a.f, true
}

func (s *Server) record(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, e)
}

// ServeHTTP serves the file at the request path, applying its fault.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, _ := s.arrive(r.URL.Path)
	fw := &faultWriter{rw: w, f: f, s: s, r: r, hdr: r.Header.Clone()}
	// A request that ends without headers (dropped, or the client left
	// during a Delay) is logged here, with status 0.
	defer fw.logOnce()

	if f.Delay > 0 && !s.pause(r, nil, f.Delay) {
		return
	}
	if f.Drop {
		fw.reset()
		return
	}
	if f.Status != 0 {
		http.Error(fw, http.StatusText(f.Status), f.Status)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(fw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.serveFile(fw, r, f)
}

func (s *Server) serveFile(fw *faultWriter, r *http.Request, f Fault) {
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	root, err := os.OpenRoot(s.root)
	if err != nil {
		http.Error(fw, err.Error(), http.StatusInternalServerError)
		return
	}
	defer root.Close()
	file, err := root.Open(filepath.FromSlash(name))
	if errors.Is(err, fs.ErrNotExist) || name == "" {
		http.NotFound(fw, r)
		return
	}
	if err != nil {
		http.Error(fw, err.Error(), http.StatusForbidden)
		return
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil || fi.IsDir() {
		http.NotFound(fw, r)
		return
	}

	h := fw.Header()
	// The ETag has the shape nginx gives it: mtime and size in hex.
	h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().Unix(), fi.Size()))
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		h.Set("Content-Type", ct)
	} else {
		// Static mirrors send their default type rather than sniffing.
		h.Set("Content-Type", "application/octet-stream")
	}
	if f.Wrong304 && (r.Header.Get("If-Modified-Since") != "" || r.Header.Get("If-None-Match") != "") {
		fw.WriteHeader(http.StatusNotModified)
		return
	}
	if f.IgnoreRange {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	http.ServeContent(fw, r, name, fi.ModTime(), file)
}

// pause waits for gate to close (nil: never) or d to pass (0: never), and
// reports false when the client left or the server is closing instead.
func (s *Server) pause(r *http.Request, gate <-chan struct{}, d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-gate:
		return true
	case <-timeout:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

var (
	errReset = errors.New("faultserver: connection reset by fault")
	errShort = errors.New("faultserver: body cut short by fault")
	errLeft  = errors.New("faultserver: client left or server closing")
)

// faultWriter applies a Fault's body faults to what http.ServeContent
// writes. It deliberately has no ReadFrom, so the body arrives through Write
// in pieces it can count, cut, corrupt and pace.
type faultWriter struct {
	rw      http.ResponseWriter
	f       Fault
	s       *Server
	r       *http.Request
	hdr     http.Header // the request headers as they arrived
	status  int         // the status written; 0 until then
	logged  bool        // the Entry is recorded
	written int64       // body bytes handed to rw
	paused  bool        // the Gate/Stall pause has happened
	dead    bool        // the connection was hijacked and closed
}

func (w *faultWriter) Header() http.Header { return w.rw.Header() }

func (w *faultWriter) logOnce() {
	if w.logged {
		return
	}
	w.logged = true
	w.s.record(Entry{
		Method: w.r.Method,
		Path:   w.r.URL.Path,
		Range:  w.hdr.Get("Range"),
		Status: w.status,
		Header: w.hdr,
	})
}

func (w *faultWriter) WriteHeader(code int) {
	if w.status != 0 || w.dead {
		return
	}
	w.status = code
	w.logOnce()
	chunk := w.f.Chunked && code < 300
	if chunk {
		w.rw.Header().Del("Content-Length")
	}
	w.rw.WriteHeader(code)
	if chunk && w.r.Method != http.MethodHead {
		// A small body written before the handler returns would get a
		// computed Content-Length; flushing now forces chunked encoding.
		_ = http.NewResponseController(w.rw).Flush()
	}
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.dead {
		return 0, errReset
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	f := w.f
	pauses := f.Gate != nil || f.Stall > 0
	total := 0
	for len(p) > 0 {
		if pauses && !w.paused && w.written >= f.GateAfter {
			w.paused = true
			_ = http.NewResponseController(w.rw).Flush()
			if !w.s.pause(w.r, f.Gate, f.Stall) {
				return total, errLeft
			}
		}
		n := int64(len(p))
		if pauses && !w.paused {
			n = min(n, f.GateAfter-w.written)
		}
		if f.ResetAfter > 0 {
			if w.written >= f.ResetAfter {
				w.reset()
				return total, errReset
			}
			n = min(n, f.ResetAfter-w.written)
		}
		if f.ShortBody > 0 {
			if w.written >= f.ShortBody {
				return total, errShort
			}
			n = min(n, f.ShortBody-w.written)
		}
		var step int64
		if f.Rate > 0 {
			// Twenty steps a second keep the pace smooth and the writes few.
			step = max(1, int64(f.Rate)/20)
			n = min(n, step)
		}
		b := p[:n]
		if f.Corrupt {
			b = make([]byte, n)
			for i, c := range p[:n] {
				b[i] = ^c
			}
		}
		m, err := w.rw.Write(b)
		w.written += int64(m)
		total += m
		if err != nil {
			return total, err
		}
		p = p[n:]
		if f.ResetAfter > 0 && w.written >= f.ResetAfter {
			w.reset()
			return total, errReset
		}
		if f.ShortBody > 0 && w.written >= f.ShortBody {
			return total, errShort
		}
		if step > 0 {
			_ = http.NewResponseController(w.rw).Flush()
			if !w.s.pause(w.r, nil, time.Duration(n)*time.Second/time.Duration(f.Rate)) {
				return total, errLeft
			}
		}
	}
	return total, nil
}

// Flush lets http.Error and ServeContent flush through the wrapper.
func (w *faultWriter) Flush() {
	if !w.dead {
		_ = http.NewResponseController(w.rw).Flush()
	}
}

// reset flushes what was written, then closes the connection with a TCP
// reset (linger 0) so the client sees a broken transfer, not a clean end.
func (w *faultWriter) reset() {
	if w.dead {
		return
	}
	w.dead = true
	w.logOnce()
	rc := http.NewResponseController(w.rw)
	if w.status != 0 {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
