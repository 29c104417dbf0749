package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrNotModified: a mirror answered 304 to the request's validators.
	ErrNotModified = errors.New("not modified")
	// ErrNotFound: every mirror answered 404.
	ErrNotFound = errors.New("not found")
)

// StatusError is an answer that is neither a file, a 304 nor a 404 from
// every mirror: a 5xx after the retries, a 403, a 404 while another mirror
// failed otherwise.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d %s", e.Code, http.StatusText(e.Code))
}

// Request names one file on the mirrors.
//
// With Repo set, the file lives in the repo's directory: the template with
// $arch and $repo filled in ("core/os/x86_64/core.db"). With Repo empty it
// lives at the mirror's base, the template cut before its first segment
// naming $repo or $arch: that is where lastupdate and lastsync are
// ("https://m.example/archlinux/$repo/os/$arch" has base
// "https://m.example/archlinux").
type Request struct {
	Method string // GET (also when empty) or HEAD
	Repo   string
	Arch   string
	File   string // a name, or a relative path of names; never "..", never escaped

	// IfModifiedSince and IfNoneMatch make the GET conditional; a 304 is
	// ErrNotModified.
	IfModifiedSince time.Time
	IfNoneMatch     string

	// Resumable marks a file whose content never changes under its name
	// (packages and their signatures): a body that breaks, stalls or ends
	// short is resumed with a Range request from the byte it broke at, on
	// the best other mirror (on the same one when no other is left), only
	// from a mirror whose file has the same size. For any other file, and
	// for a body without Content-Length, a broken body is an error from
	// Read, and the caller fetches again from the start.
	Resumable bool
}

func (r *Request) validate() error {
	switch r.Method {
	case "":
		r.Method = http.MethodGet
	case http.MethodGet, http.MethodHead:
	default:
		return fmt.Errorf("fetch %s: method %s: want GET or HEAD", r.File, r.Method)
	}
	if r.File == "" {
		return fmt.Errorf("fetch: no file name")
	}
	for seg := range strings.SplitSeq(r.File, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("fetch %q: not a relative path of file names", r.File)
		}
	}
	return nil
}

// Response is a mirror's answer with the file. Body must be closed. The body
// belongs to the context given to Fetch: canceling it ends the body too.
type Response struct {
	Status       int   // 200
	Size         int64 // the Content-Length; -1 when the mirror did not send one
	LastModified time.Time
	ETag         string
	ContentType  string
	Mirror       string // host:port of the mirror that answered first
	// Body delivers exactly Size bytes (when known) then io.EOF. A body that
	// breaks, stalls or ends short is an error, never an early io.EOF.
	// Close must not be called while a Read is running; cancel the context.
	Body io.ReadCloser
}

// Fetch asks the mirrors for a file, best ranked first, moving to the next
// on a connection error, a timeout, a 5xx (after the retries) or any status
// but 200, 304 and 404. A 404 also moves on, since mirrors lag behind each
// other; only 404 from every mirror is ErrNotFound. A 304 is
// ErrNotModified at once. When every mirror fails the error joins each
// mirror's error.
func (s *MirrorSet) Fetch(ctx context.Context, req Request) (*Response, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	ranked := s.rank(time.Now())
	var errs []error
	notFound := 0
	tried := make([]*mirror, 0, len(ranked))
	for i, m := range ranked {
		tried = append(tried, m)
		a, err := s.open(ctx, m, &req, 0)
		if err == nil {
			return s.response(ctx, &req, a, tried), nil
		}
		if errors.Is(err, ErrNotModified) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch %s: %w", req.File, context.Cause(ctx))
		}
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			notFound++
		}
		errs = append(errs, err)
		if i < len(ranked)-1 {
			s.c.metrics.failovers.WithLabelValues(m.label).Inc()
			if notFound == len(errs) {
				s.c.opts.Logger.Debug("file not on mirror, trying next", "file", req.File, "mirror", m.label)
			} else {
				s.c.opts.Logger.Warn("mirror failed, trying next", "file", req.File, "mirror", m.label, "err", err)
			}
		}
	}
	if notFound == len(ranked) {
		return nil, fmt.Errorf("fetch %s: %w", req.File, ErrNotFound)
	}
	return nil, errors.Join(errs...)
}

// response wraps a successful first attempt.
func (s *MirrorSet) response(ctx context.Context, req *Request, a *attempt, tried []*mirror) *Response {
	h := a.resp.Header
	r := &Response{
		Status:      http.StatusOK,
		Size:        a.resp.ContentLength,
		ETag:        h.Get("ETag"),
		ContentType: h.Get("Content-Type"),
		Mirror:      a.m.label,
	}
	if t, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		r.LastModified = t
	}
	if req.Method == http.MethodHead {
		a.close()
		r.Body = http.NoBody
		return r
	}
	// The mirrors that failed before this one answered have delivered
	// nothing: they are stuck until the body makes progress.
	stuck := slices.Clone(tried[:len(tried)-1])
	r.Body = &body{s: s, ctx: ctx, req: *req, size: r.Size, cur: a, stuck: stuck}
	return r
}

// errStalled is the cause given to an attempt's context by its watchdog.
var errStalled = errors.New("stalled")

// attempt is one mirror's response whose body is being read.
type attempt struct {
	m      *mirror
	resp   *http.Response
	ctx    context.Context // canceled by close or by the watchdog
	cancel context.CancelCauseFunc
	dog    *time.Timer // the stall watchdog, armed only inside read
	stall  time.Duration
	start  time.Time // when the headers arrived
	n      int64     // body bytes read
	bytes  prometheus.Counter
	slot   *slots // the mirror's slots while this attempt holds one; nil after close
}

// open sends req to m, with Range from offset when offset > 0, and returns
// the attempt if the answer is a body (200, or 206 for a Range). Any other
// outcome is an error wrapped with the file and the mirror; it updates the
// mirror's health unless ctx ended.
func (s *MirrorSet) open(ctx context.Context, m *mirror, req *Request, offset int64) (*attempt, error) {
	wrap := func(err error) error {
		return fmt.Errorf("fetch %s from %s: %w", req.File, m.label, err)
	}
	u, err := m.fileURL(req)
	if err != nil {
		return nil, wrap(err)
	}
	info := &attemptInfo{mirror: m.label, proxy: s.proxy}
	actx, cancel := context.WithCancelCause(context.WithValue(ctx, attemptKey{}, info))
	hr, err := retryablehttp.NewRequestWithContext(actx, req.Method, u, nil)
	if err != nil {
		cancel(nil)
		return nil, wrap(err)
	}
	hr.Header.Set("User-Agent", s.c.opts.UserAgent)
	if offset > 0 {
		hr.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	} else {
		if !req.IfModifiedSince.IsZero() {
			hr.Header.Set("If-Modified-Since", req.IfModifiedSince.UTC().Format(http.TimeFormat))
		}
		if req.IfNoneMatch != "" {
			hr.Header.Set("If-None-Match", req.IfNoneMatch)
		}
	}

	if err := m.slots.acquire(ctx); err != nil {
		cancel(nil)
		return nil, wrap(err)
	}
	resp, err := s.c.retry.Do(hr)
	now := time.Now()
	if err != nil {
		m.slots.release()
		cancel(nil)
		if ctx.Err() == nil {
			m.failed(err, now)
		}
		return nil, wrap(err)
	}
	want := http.StatusOK
	if offset > 0 {
		want = http.StatusPartialContent
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK || code == want:
		m.answered(info.last)
		a := &attempt{m: m, resp: resp, ctx: actx, cancel: cancel, stall: s.c.opts.StallTimeout, start: now,
			bytes: s.c.metrics.bytes.WithLabelValues(m.label), slot: m.slots}
		a.dog = time.AfterFunc(a.stall, func() { cancel(errStalled) })
		a.dog.Stop()
		return a, nil
	case code == http.StatusNotModified && offset == 0 && (!req.IfModifiedSince.IsZero() || req.IfNoneMatch != ""):
		resp.Body.Close()
		m.slots.release()
		cancel(nil)
		m.answered(info.last)
		return nil, wrap(ErrNotModified)
	case code == http.StatusNotFound:
		resp.Body.Close()
		m.slots.release()
		cancel(nil)
		m.answered(info.last)
		return nil, wrap(&StatusError{Code: code})
	default:
		resp.Body.Close()
		m.slots.release()
		cancel(nil)
		err := &StatusError{Code: code}
		m.failed(err, now)
		return nil, wrap(err)
	}
}

// read reads the body with the stall watchdog armed, so only time spent
// waiting on the mirror counts, never time the caller spends elsewhere.
func (a *attempt) read(p []byte) (int, error) {
	a.dog.Reset(a.stall)
	n, err := a.resp.Body.Read(p)
	a.dog.Stop()
	a.n += int64(n)
	a.bytes.Add(float64(n))
	if err != nil && err != io.EOF && errors.Is(context.Cause(a.ctx), errStalled) {
		err = fmt.Errorf("no body bytes for %s: %w", a.stall, errStalled)
	}
	return n, err
}

// close ends the attempt and gives back its slot; it may be called again.
func (a *attempt) close() {
	a.dog.Stop()
	a.resp.Body.Close()
	a.cancel(nil)
	if a.slot != nil {
		a.slot.release()
		a.slot = nil
	}
}
