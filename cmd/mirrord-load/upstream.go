package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/faultserver"
)

// UpstreamStats is what the upstream served since it started or was last
// reset: file requests, body bytes, and when the first and last body bytes
// of any response left it.
type UpstreamStats struct {
	Requests  int64     `json:"requests"`
	Bytes     int64     `json:"bytes"`
	FirstByte time.Time `json:"first_byte"`
	LastByte  time.Time `json:"last_byte"`
}

// upstream serves a directory through a faultserver.Server, paces each
// response body to rate bytes per second, and counts what leaves it.
// GET /_count returns UpstreamStats as JSON; POST /_reset zeroes them.
//
// The pacing is ours rather than faultserver's Rate: that one sleeps after
// each write for the write's share of a second, so timer overshoot adds up
// (20 MB/s came out as 14 MB/s); pacing to an absolute schedule does not
// drift.
type upstream struct {
	files *faultserver.Server
	rate  int64 // bytes per second per response; 0: unthrottled
	bytes atomic.Int64
	first atomic.Int64 // unix ns of the first body byte; 0: none yet
	last  atomic.Int64 // unix ns of the latest body byte
}

func newUpstream(root string, rate int64) *upstream {
	return &upstream{files: faultserver.New(root), rate: rate}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_count":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(u.Stats())
	case "/_reset":
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		u.Reset()
	default:
		u.files.ServeHTTP(&countingWriter{ResponseWriter: w, u: u, ctx: r.Context()}, r)
	}
}

// Stats returns the counts so far.
func (u *upstream) Stats() UpstreamStats {
	st := UpstreamStats{Requests: int64(u.files.Total()), Bytes: u.bytes.Load()}
	if ns := u.first.Load(); ns != 0 {
		st.FirstByte = time.Unix(0, ns)
		st.LastByte = time.Unix(0, u.last.Load())
	}
	return st
}

// Reset zeroes the counts; the rate stays.
func (u *upstream) Reset() {
	u.files.Reset()
	u.bytes.Store(0)
	u.first.Store(0)
	u.last.Store(0)
}

// countingWriter counts and paces one response body.
type countingWriter struct {
	http.ResponseWriter
	u     *upstream
	ctx   context.Context // the request's: a client that leaves ends the pause
	start time.Time       // of the first body byte
	sent  int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	// Counted before the write: the client may have the last byte and ask
	// /_count before a counter updated after the write would have moved.
	c.u.bytes.Add(int64(len(p)))
	n, err := c.ResponseWriter.Write(p)
	c.u.bytes.Add(int64(n - len(p)))
	if n == 0 {
		return n, err
	}
	now := time.Now()
	if c.start.IsZero() {
		c.start = now
	}
	c.sent += int64(n)
	c.u.first.CompareAndSwap(0, now.UnixNano())
	for last := c.u.last.Load(); now.UnixNano() > last && !c.u.last.CompareAndSwap(last, now.UnixNano()); last = c.u.last.Load() {
	}
	if err != nil || c.u.rate <= 0 {
		return n, err
	}
	// Sleep until the schedule allows what was sent so far.
	due := c.start.Add(time.Duration(float64(c.sent) / float64(c.u.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		http.NewResponseController(c.ResponseWriter).Flush()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return n, c.ctx.Err()
		}
	}
	return n, nil
}

// Unwrap lets http.ResponseController flush and hijack through us.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func upstreamCmd(args []string) error {
	fs := pflag.NewFlagSet("upstream", pflag.ContinueOnError)
	root := fs.String("root", "", "directory to serve")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	rateFlag := fs.String("rate", "0", "body bytes per second per response, e.g. 20MB; 0: unthrottled")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" {
		return errors.New("upstream: --root is required")
	}
	if fi, err := os.Stat(*root); err != nil || !fi.IsDir() {
		return fmt.Errorf("upstream: --root %s is not a directory", *root)
	}
	rate, err := config.ParseByteSize(*rateFlag)
	if err != nil {
		return fmt.Errorf("upstream: --rate: %w", err)
	}
	u := newUpstream(*root, int64(rate))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "mirrord-load upstream: serving %s on http://%s at %d bytes/s (0: unthrottled)\n", *root, ln.Addr(), int64(rate))
	select {
	case err = <-served:
	case <-ctx.Done():
		srv.Close() // paced responses would take long to drain; cut them
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	enc := json.NewEncoder(os.Stdout)
	if eerr := enc.Encode(u.Stats()); err == nil {
		err = eerr
	}
	return err
}
