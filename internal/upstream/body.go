package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

var errClosed = errors.New("body closed")

// body is Response.Body: it reads the current attempt and, for a
// resumable request, replaces a broken attempt with one on another mirror
// (or the same one, when no other is left) that continues at the exact byte
// already delivered. Like any io.ReadCloser it is used by one goroutine at
// a time.
//
// A body gives up when every mirror has failed without delivering a byte
// since the last byte delivered, or after maxResumes resumes in all, so a
// mirror that cuts every response short cannot keep it going for ever.
type body struct {
	s    *MirrorSet
	ctx  context.Context // the Fetch context; the body belongs to it
	req  Request
	size int64 // the first answer's Content-Length; -1 unknown

	cur       *attempt  // nil once finished
	from      int64     // b.delivered when cur took over
	stuck     []*mirror // mirrors that failed with no byte delivered since the last one was
	resumes   int       // resumes so far
	delivered int64     // bytes returned to the caller
	err       error     // sticky: io.EOF, errClosed or the failure
}

// maxResumes bounds the resumes of one body: four per mirror, plus a few so
// that a single flaky mirror can be resumed on too.
func (b *body) maxResumes() int { return 4*len(b.s.mirrors) + 4 }

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for {
		a := b.cur
		n, err := a.read(p)
		b.delivered += int64(n)
		if b.size >= 0 && b.delivered > b.size {
			// net/http stops at Content-Length, so this is a guard, not a path.
			err = fmt.Errorf("body longer than its Content-Length %d", b.size)
		}
		if err == nil {
			return n, nil
		}
		if err == io.EOF {
			if b.size < 0 || b.delivered == b.size {
				a.m.transferred(a.n, time.Since(a.start))
				b.finish(io.EOF)
				return n, io.EOF
			}
			err = fmt.Errorf("body ended at byte %d of %d: %w", b.delivered, b.size, io.ErrUnexpectedEOF)
		}
		if b.ctx.Err() != nil {
			// The caller left: not the mirror's fault.
			b.finish(fmt.Errorf("read %s: %w", b.req.File, context.Cause(b.ctx)))
			return n, b.err
		}
		err = fmt.Errorf("read %s from %s at byte %d: %w", b.req.File, a.m.label, b.delivered, err)
		a.m.failed(err, time.Now())
		if !b.req.Resumable || b.size < 0 {
			// A mutable file may have changed between mirrors, and without
			// a size a resumed body could not be checked: the caller
			// fetches again from the start.
			b.finish(err)
			return n, err
		}
		if b.delivered > b.from {
			b.stuck = b.stuck[:0]
		} else {
			b.stuck = append(b.stuck, a.m)
		}
		if rerr := b.resume(err); rerr != nil {
			b.finish(rerr)
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// finish ends the body with err and releases the current attempt.
func (b *body) finish(err error) {
	b.err = err
	if b.cur != nil {
		b.cur.close()
		b.cur = nil
	}
}

func (b *body) Close() error {
	if b.err == nil {
		b.finish(errClosed)
	}
	return nil
}

// pick chooses where to resume after failed broke: the best ranked mirror
// that is not stuck, another mirror before failed itself.
func (b *body) pick(failed *mirror) *mirror {
	for _, m := range b.s.rank(time.Now()) {
		if m != failed && !slices.Contains(b.stuck, m) {
			return m
		}
	}
	if !slices.Contains(b.stuck, failed) {
		return failed
	}
	return nil
}

// resume replaces the broken current attempt with one that continues from
// byte b.delivered. A mirror that answers 200 has the bytes already
// delivered skipped; one whose file has another size is passed over, so two
// different files are never spliced.
func (b *body) resume(cause error) error {
	errs := []error{cause}
	failed := b.cur.m
	b.cur.close()
	b.cur = nil
	for {
		next := b.pick(failed)
		if next == nil || b.resumes >= b.maxResumes() {
			if next != nil {
				errs = append(errs, fmt.Errorf("gave up after %d resumes", b.resumes))
			}
			return errors.Join(errs...)
		}
		b.resumes++
		b.s.c.metrics.failovers.WithLabelValues(failed.label).Inc()
		b.s.c.opts.Logger.Warn("mirror failed mid-body, resuming", "file", b.req.File,
			"mirror", failed.label, "next", next.label, "bytes", b.delivered, "err", cause)

		a, err := b.s.open(b.ctx, next, &b.req, b.delivered)
		if err == nil {
			err = b.align(a)
			if err != nil {
				a.close()
				if b.ctx.Err() == nil {
					next.failed(err, time.Now())
				}
				err = fmt.Errorf("resume %s on %s at byte %d: %w", b.req.File, next.label, b.delivered, err)
			}
		}
		if err == nil {
			b.cur, b.from = a, b.delivered
			return nil
		}
		if b.ctx.Err() != nil {
			return fmt.Errorf("read %s: %w", b.req.File, context.Cause(b.ctx))
		}
		errs = append(errs, err)
		b.stuck = append(b.stuck, next)
		failed, cause = next, err
	}
}

// align checks that a resumed attempt continues the same file at
// b.delivered, skipping the delivered bytes of a whole-file answer.
func (b *body) align(a *attempt) error {
	switch a.resp.StatusCode {
	case http.StatusPartialContent:
		start, total, err := parseContentRange(a.resp.Header.Get("Content-Range"))
		if err != nil {
			return err
		}
		if total != b.size {
			return fmt.Errorf("mirror has a %d-byte file, not %d bytes", total, b.size)
		}
		if start != b.delivered {
			return fmt.Errorf("mirror sent bytes from %d, not %d", start, b.delivered)
		}
		return nil
	case http.StatusOK:
		if a.resp.ContentLength < 0 {
			return fmt.Errorf("mirror sent no Content-Length to check against %d bytes", b.size)
		}
		if a.resp.ContentLength != b.size {
			return fmt.Errorf("mirror has a %d-byte file, not %d bytes", a.resp.ContentLength, b.size)
		}
		// The mirror ignored Range: skip what the caller already has.
		skip := b.delivered
		buf := make([]byte, min(skip, 32<<10))
		for skip > 0 {
			n, err := a.read(buf[:min(skip, int64(len(buf)))])
			skip -= int64(n)
			if err != nil && skip > 0 {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("skip to byte %d: %w", b.delivered, err)
			}
		}
		return nil
	}
	return fmt.Errorf("unexpected status %d to a Range request", a.resp.StatusCode)
}

// parseContentRange parses "bytes START-END/TOTAL" with a known total.
func parseContentRange(v string) (start, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", v)
	spec, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, bad
	}
	rng, tot, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, bad
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, bad
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	total, err3 := strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || end >= total {
		return 0, 0, bad
	}
	if end != total-1 {
		return 0, 0, fmt.Errorf("content range %q stops before the end", v)
	}
	return start, total, nil
}
