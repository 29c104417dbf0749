package lockfree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// errClosed is returned by the methods of a closed Reader.
var errClosed = errors.New("lockfree: reader closed")

// Reader follows a flight's file as it grows. ReadAt may be called
// concurrently; Read and Seek share the reader's offset and may not, like
// any io.ReadSeeker. A Reader is an io.ReadSeeker, so http.ServeContent can
// serve Range and HEAD requests on a file still in flight when its size is
// known.
type Reader struct {
	f   *Flight
	ctx context.Context
	// held reports whether this reader holds a reference on the file: it
	// does unless it joined after the flight had let go of the file.
	held   bool
	off    int64 // for Read and Seek
	closed atomic.Bool
}

// NewReader returns a reader of the flight; it counts in Readers until
// Close. Every wait of the reader ends when ctx is done, with ctx.Err();
// that ends the wait, not the flight. A reader of an abandoned flight
// (Group.Abandon) gets its abort error; Join refuses instead.
func (f *Flight) NewReader(ctx context.Context) *Reader {
	f.readers.Add(1)
	return &Reader{f: f, ctx: ctx, held: f.acquire()}
}

// Join is NewReader unless the flight was abandoned (Group.Abandon), in
// which case it returns false: the flight has left its Group, so Do finds
// another one or starts one. See Group.Join.
func (f *Flight) Join(ctx context.Context) (*Reader, bool) {
	for {
		n := f.readers.Load()
		if n < 0 {
			return nil, false
		}
		if f.readers.CompareAndSwap(n, n+1) {
			return &Reader{f: f, ctx: ctx, held: f.acquire()}, true
		}
	}
}

// Wait blocks until the fill has called Begin and returns its metadata, or
// returns the reason there will be no file: the fill's error, ErrNoFile, or
// the reader's ctx.Err().
func (r *Reader) Wait() (Meta, error) {
	st, _, err := r.await(0)
	if err != nil {
		return Meta{}, err
	}
	return st.meta, nil
}

// Read reads at the reader's offset as soon as at least one byte is there.
// It returns io.EOF only at the end of a flight that completed; after a
// failure it returns the fill's error once the written bytes are consumed.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	st, avail, err := r.await(r.off + 1)
	if err != nil {
		return 0, err
	}
	p = p[:min(int64(len(p)), avail-r.off)]
	n, err := readFull(st.file, p, r.off)
	r.off += int64(n)
	return n, err
}

// ReadAt waits until [off, off+len(p)) is written, or the flight ends, or
// ctx is done. At the end of the flight it returns the bytes there are with
// io.EOF (completed) or the fill's error (failed).
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("lockfree: read %s at negative offset %d", r.f.key, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	st, avail, err := r.await(off + int64(len(p)))
	if st == nil || avail <= off {
		return 0, err
	}
	p = p[:min(int64(len(p)), avail-off)]
	n, rerr := readFull(st.file, p, off)
	if rerr != nil {
		return n, rerr
	}
	return n, err
}

// Seek sets the offset of the next Read. io.SeekEnd waits for Begin and is
// relative to Meta.Size, or to the final size once the flight completed; it
// fails with ErrSizeUnknown otherwise.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = r.off
	case io.SeekEnd:
		size, err := r.size()
		if err != nil {
			return 0, err
		}
		base = size
	default:
		return 0, fmt.Errorf("lockfree: seek %s: invalid whence %d", r.f.key, whence)
	}
	if base+offset < 0 {
		return 0, fmt.Errorf("lockfree: seek %s to negative offset %d", r.f.key, base+offset)
	}
	r.off = base + offset
	return r.off, nil
}

// size returns the file's total size, once it is known.
func (r *Reader) size() (int64, error) {
	st, _, err := r.await(0)
	if err != nil {
		return 0, err
	}
	if st.meta.Size >= 0 {
		return st.meta.Size, nil
	}
	if r.f.isDone() && r.f.err == nil {
		return r.f.written.Load(), nil
	}
	return 0, fmt.Errorf("seek %s from the end: %w", r.f.key, ErrSizeUnknown)
}

// Close stops counting the reader and lets go of its reference on the file;
// the last one closes it. Close is idempotent.
func (r *Reader) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	r.f.readers.Add(-1)
	if r.held {
		r.f.release()
	}
	return nil
}

// await blocks until the file is published and at least want bytes are
// written, or until the flight ends or the reader's ctx is done. It returns
// the published state and the bytes available; err is non-nil exactly when
// fewer than want bytes will ever be there (io.EOF, the fill's error,
// ErrNoFile) or when the reader gave up (ctx.Err(), errClosed).
func (r *Reader) await(want int64) (*state, int64, error) {
	f := r.f
	for {
		if r.closed.Load() {
			return nil, 0, errClosed
		}
		// Load the channel first: a change made after these loads closes
		// this channel, so the select below cannot sleep through it.
		notify := *f.notify.Load()
		done := f.isDone() // before written, so written is final if done
		st := f.st.Load()
		if !r.held {
			// The flight let go of the file before this reader came: its
			// fill has returned, and Done is imminent if not closed yet.
			st = nil
		}
		avail := f.written.Load()
		switch {
		case st != nil && avail >= want:
			return st, avail, nil
		case done:
			return st, avail, f.endErr(st != nil)
		}
		select {
		case <-notify:
		case <-r.ctx.Done():
			return nil, 0, r.ctx.Err()
		}
	}
}

// endErr is why a reader of a finished flight gets no more bytes.
func (f *Flight) endErr(haveFile bool) error {
	switch {
	case f.err != nil:
		return f.err
	case haveFile:
		return io.EOF
	default:
		return ErrNoFile
	}
}

// readFull reads len(p) bytes that are known to be in the file.
func readFull(file File, p []byte, off int64) (int, error) {
	n, err := file.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF // written bytes went missing
	}
	return n, fmt.Errorf("lockfree: read written bytes: %w", err)
}
