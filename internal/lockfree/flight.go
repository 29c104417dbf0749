package lockfree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// File is where a fill writes and readers read: an *os.File in practice.
// Readers use ReadAt (pread), so they never share a file offset.
type File interface {
	io.ReaderAt
	io.WriterAt
}

// Meta is the response metadata a fill publishes with Begin.
type Meta struct {
	Size        int64 // total bytes, -1 when upstream did not say
	ModTime     time.Time
	ETag        string
	ContentType string
	Extra       any // for the fill's caller, e.g. the mirror it chose
}

var (
	// ErrNoFile is returned to a reader of a flight that ended without a
	// file for it: the fill returned nil without Begin (it found the file
	// already cached), or the reader joined after the flight had ended and
	// closed its file (never the leader's reader from Group.Join). Either
	// way the file is in the cache: read it there.
	ErrNoFile = errors.New("lockfree: flight ended without a file for this reader")
	// ErrAborted is the cause of a fill's cancellation by Abort(nil).
	ErrAborted = errors.New("lockfree: flight aborted")
	// ErrSizeUnknown is returned by Seek relative to the end while the size
	// is unknown (Meta.Size is -1 and the flight has not completed).
	ErrSizeUnknown = errors.New("lockfree: size unknown")
)

// state is what Begin publishes, once.
type state struct {
	file File
	meta Meta
}

// Flight is one fetch of one file, shared by every reader that joins it.
//
// The fill writes and everyone else reads, all through atomics: nothing
// here is locked, and nothing is held across I/O. Readers wait on notify, a
// channel that the fill closes and replaces each time it makes progress, so
// publishing costs the fill one channel allocation however many readers
// there are and whatever they are doing: a slow or vanished reader costs it
// nothing.
//
// The file's lifetime is a reference count. Begin hands the file to the
// flight, which holds one reference until the fill has returned; each
// Reader holds one until Close. The last to let go closes the file (if it
// is an io.Closer). A fill may therefore fsync and rename the file into the
// tree, or remove it after a failure, while readers still read through the
// open descriptor (POSIX keeps it valid), and no reader ever reads a closed
// file. The alternative, an Open func in Meta so that each reader opens its
// own descriptor, would cost one open(2) per reader and breaks when the fill
// renames or removes the path meanwhile.
type Flight struct {
	key string
	// cancel cancels the fill's context; set before the flight is
	// published, read-only after.
	cancel context.CancelCauseFunc

	// st is nil until Begin; written once by the fill.
	st atomic.Pointer[state]
	// written is the count of bytes in the file from offset 0. Only the
	// fill adds to it (in Write), before broadcasting.
	written atomic.Int64
	// notify holds the channel that the next advance closes. The fill swaps
	// in a new one and closes the old one; a reader loads it before looking
	// at written or st, so that it cannot miss the wake-up for a change it
	// did not see.
	notify atomic.Pointer[chan struct{}]
	// done is closed once the fill has returned and err is set.
	done chan struct{}
	// err is the flight's result: written once by the fill's goroutine
	// before it closes done, read only after <-done.
	err error

	// readers counts open Readers (for Group.Abandon and a gauge); it is
	// negative once the flight is abandoned, and Join fails from then on.
	readers atomic.Int64
	// refs counts holders of the file: 1 for the flight until its fill
	// returns, plus 1 per Reader that got one. It never rises from 0.
	refs atomic.Int64
}

func newFlight(key string, cancel context.CancelCauseFunc) *Flight {
	f := &Flight{key: key, cancel: cancel, done: make(chan struct{})}
	ch := make(chan struct{})
	f.notify.Store(&ch)
	f.refs.Store(1)
	return f
}

// Key returns the key the flight was started for.
func (f *Flight) Key() string { return f.key }

// Begin publishes the file and the response metadata and wakes the readers
// waiting in Wait. The fill calls it once, before Write and before it
// returns; from then on the flight owns file (see Flight) and the fill must
// not close it. Set meta.Size to -1 when the size is unknown; when it is
// known, Write refuses to pass it and a fill that returns nil with fewer
// bytes written fails the flight instead.
func (f *Flight) Begin(file File, meta Meta) {
	if file == nil {
		panic("lockfree: Begin with a nil file")
	}
	if f.isDone() {
		closeFile(file) // misuse: nobody will read it, but we own it now
		return
	}
	if !f.st.CompareAndSwap(nil, &state{file: file, meta: meta}) {
		panic("lockfree: Begin called twice")
	}
	f.broadcast()
}

// Write appends p to the file (WriteAt at the current end), then publishes
// the new length and wakes the readers; a Flight is an io.Writer, so a fill
// can io.Copy(f, body). Write belongs to the fill: calls must not overlap,
// nor come after the fill returned.
func (f *Flight) Write(p []byte) (int, error) {
	st := f.st.Load()
	if st == nil {
		return 0, fmt.Errorf("lockfree: write to %s before Begin", f.key)
	}
	if f.isDone() {
		return 0, fmt.Errorf("lockfree: write to %s after its fill returned", f.key)
	}
	off := f.written.Load()
	if size := st.meta.Size; size >= 0 && off+int64(len(p)) > size {
		return 0, fmt.Errorf("lockfree: write %s: %d bytes at %d pass the announced size %d", f.key, len(p), off, size)
	}
	n, err := st.file.WriteAt(p, off)
	if n > 0 {
		f.written.Add(int64(n))
		f.broadcast()
	}
	return n, err
}

// broadcast wakes every reader waiting for a change. It never blocks.
func (f *Flight) broadcast() {
	ch := make(chan struct{})
	close(*f.notify.Swap(&ch))
}

// Abort cancels the fill's context with cause err (ErrAborted if nil). The
// proxy uses it when the last reader left and the cache does not want the
// file. Readers get the fill's error, wrapped with err when the fill returns
// a context.Canceled, so that they can tell it from their own context's end.
// To end a flight only if nobody reads it, use Group.Abandon: a decision
// on Readers() == 0 races with a reader joining meanwhile.
func (f *Flight) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	f.cancel(err)
}

// Written returns the number of bytes written so far.
func (f *Flight) Written() int64 { return f.written.Load() }

// Meta returns the metadata published by Begin, and false before Begin.
func (f *Flight) Meta() (Meta, bool) {
	if st := f.st.Load(); st != nil {
		return st.meta, true
	}
	return Meta{}, false
}

// Done is closed when the fill has returned and Err is final; the flight
// has let go of its file, which the last open Reader closes.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Err returns nil while the fill runs, then its result.
func (f *Flight) Err() error {
	if f.isDone() {
		return f.err
	}
	return nil
}

// Readers returns the number of open Readers.
func (f *Flight) Readers() int { return int(max(f.readers.Load(), 0)) }

func (f *Flight) isDone() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// finish ends the flight with the fill's result. It runs on the fill's
// goroutine, after the fill returned and the key left the registry.
func (f *Flight) finish(ctx context.Context, err error) {
	st := f.st.Load()
	if err == nil && st != nil && st.meta.Size >= 0 && f.written.Load() != st.meta.Size {
		// A short file must reach readers as a broken transfer.
		err = fmt.Errorf("lockfree: fill of %s returned after %d of %d bytes", f.key, f.written.Load(), st.meta.Size)
	}
	if err != nil && errors.Is(err, context.Canceled) {
		// Tell the readers why: their own context is not what was cancelled.
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	f.err = err
	f.cancel(nil) // release the context's resources
	// Let go of the file before Done, so that after Done the last Reader to
	// close is the one that closes it.
	f.release()
	close(f.done)
	f.broadcast()
}

// acquire takes a reference on the file, unless the last one is gone.
func (f *Flight) acquire() bool {
	for {
		n := f.refs.Load()
		if n == 0 {
			return false
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes the file.
func (f *Flight) release() {
	if f.refs.Add(-1) != 0 {
		return
	}
	if st := f.st.Load(); st != nil {
		closeFile(st.file)
	}
}

func closeFile(file File) {
	if c, ok := file.(io.Closer); ok {
		// The fill has returned: whatever it wanted durable it has synced,
		// and readers only read, so there is nobody to tell of an error.
		_ = c.Close()
	}
}
