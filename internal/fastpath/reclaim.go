package fastpath

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A connection that the fast path handed to net/http comes back after a
// response the client can delimit by its length: a pacman session that
// revalidates a database or misses one package would otherwise be
// net/http's for every later hit. reclaim hijacks the connection once the
// response is flushed, and starts the fast path on it again with the
// bytes net/http had read ahead.
//
// Only a response net/http ends on its own is left to it: chunked, with
// Connection: close, short of its Content-Length, or to a request with a
// body, HTTP/1.0 or Connection: close.

// connKey marks the context of a connection Fallback got from the fast
// path: only those come back.
type connKey struct{}

// wrapFallback installs reclaim around Fallback's Handler and marks the
// connections it gets from the fast path.
func (s *Server) wrapFallback() {
	next := s.Fallback.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	s.Fallback.Handler = s.reclaim(next)
	connContext := s.Fallback.ConnContext
	s.Fallback.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, c)
		}
		if rc, ok := c.(*replayConn); ok && rc.s == s {
			ctx = context.WithValue(ctx, connKey{}, rc)
		}
		return ctx
	}
}

func (s *Server) reclaim(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := r.Context().Value(connKey{}).(*replayConn)
		if rc == nil || r.Method != http.MethodGet && r.Method != http.MethodHead ||
			r.Close || !r.ProtoAtLeast(1, 1) || r.Body != http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		lw := &lengthWriter{ResponseWriter: w, head: r.Method == http.MethodHead}
		next.ServeHTTP(lw, r)
		if !lw.delimited() || s.closing.Load() {
			return
		}
		ctl := http.NewResponseController(w)
		if ctl.Flush() != nil {
			return
		}
		nc, brw, err := ctl.Hijack()
		if err != nil {
			return // the handler hijacked it, or net/http cannot let go
		}
		if nc != net.Conn(rc) {
			nc.Close() // not the connection the context named: never expected
			return
		}
		s.adopt(rc.raw, pendingAfter(brw.Reader, rc), time.Time{}) // keep-alive: the response just ended
	})
}

// pendingAfter returns what the client sent after the request net/http
// just answered: net/http's read-ahead, then what it had not read of rc.
func pendingAfter(br *bufio.Reader, rc *replayConn) []byte {
	buf, _ := br.Peek(br.Buffered())
	return append(append([]byte(nil), buf...), rc.pending...)
}

// lengthWriter watches a response for what net/http will make of it.
type lengthWriter struct {
	http.ResponseWriter
	head    bool  // the response to a HEAD request
	status  int   // the final status, once written
	length  int64 // Content-Length when the header was written, or -1
	keep    bool  // the header neither chunks nor closes
	written int64 // body bytes written
}

func (w *lengthWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		h := w.Header()
		w.status = code
		w.length = -1
		if v := h.Get("Content-Length"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				w.length = n
			}
		}
		w.keep = len(h["Transfer-Encoding"]) == 0 && !hasClose(h["Connection"])
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *lengthWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile(2) for file bodies.
func (w *lengthWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.written += n
	return n, err
}

func (w *lengthWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach net/http's writer.
func (w *lengthWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// delimited reports whether the response is whole and ends where the
// client expects: net/http will neither chunk it nor close after it.
func (w *lengthWriter) delimited() bool {
	switch {
	case w.status == 0 || !w.keep:
		return false
	case w.head || w.status == http.StatusNotModified || w.status == http.StatusNoContent:
		return true // no body
	default:
		return w.length >= 0 && w.written == w.length
	}
}

func hasClose(values []string) bool {
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}
