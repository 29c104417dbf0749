package lockfree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

func TestDoRunsOneFill(t *testing.T) {
	var g Group
	gf := newGatedFill(t, pattern(10_000))
	const callers = 100
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		leaders atomic.Int32
		flights = make([]*Flight, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			f, leader := g.Do(t.Context(), "core/os/x86_64/core.db", gf.fill)
			if leader {
				leaders.Add(1)
			}
			flights[i] = f
		})
	}
	close(start)
	wg.Wait()
	if n := leaders.Load(); n != 1 {
		t.Errorf("leaders = %d, want 1", n)
	}
	for i, f := range flights {
		if f != flights[0] {
			t.Fatalf("caller %d got another flight", i)
		}
	}
	if n := g.Len(); n != 1 {
		t.Errorf("Len() = %d in flight, want 1", n)
	}
	if f := g.Lookup("core/os/x86_64/core.db"); f != flights[0] {
		t.Errorf("Lookup() = %p, want %p", f, flights[0])
	}
	gf.open()
	<-flights[0].Done()
	if n := gf.fills.Load(); n != 1 {
		t.Errorf("fills = %d, want 1", n)
	}
	if f := g.Lookup("core/os/x86_64/core.db"); f != nil {
		t.Errorf("Lookup() after Done = %p, want nil", f)
	}
	if n := g.Len(); n != 0 {
		t.Errorf("Len() after Done = %d, want 0", n)
	}
	// The key is free again: the next miss starts a new flight.
	gf2 := newGatedFill(t, pattern(10)).open()
	f, leader := g.Do(t.Context(), "core/os/x86_64/core.db", gf2.fill)
	if !leader || f == flights[0] {
		t.Errorf("Do() after Done = %p, %v, want a new flight and leader", f, leader)
	}
	<-f.Done()
}

func TestManyReadersGetTheSameBytes(t *testing.T) {
	data := pattern(1 << 20)
	var g Group
	gf := newGatedFill(t, data)
	f, _ := g.Do(t.Context(), "extra/os/x86_64/big.pkg.tar.zst", gf.fill)

	const readers = 64
	results := make([][]byte, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	join := func(i int) {
		r := f.NewReader(t.Context())
		wg.Go(func() {
			defer r.Close()
			results[i], errs[i] = readAll(r)
		})
	}
	// A third join before Begin, a third mid-way, a third once every byte
	// is written but the fill has not returned (the key is still there).
	for i := range readers {
		switch i {
		case readers / 3:
			close(gf.begin)
			<-gf.half
		case 2 * readers / 3:
			close(gf.more)
			<-gf.allBytes
			if got := g.Lookup(f.Key()); got != f {
				t.Fatalf("Lookup(%q) = %p before the fill returned, want %p", f.Key(), got, f)
			}
		}
		join(i)
	}
	if n := f.Readers(); n != readers {
		t.Errorf("Readers() = %d, want %d", n, readers) // none can end before the fill
	}
	close(gf.finish)
	wg.Wait()
	for i := range readers {
		if errs[i] != nil || !bytes.Equal(results[i], data) {
			t.Errorf("reader %d: read %d bytes, %v; want the %d bytes written, nil", i, len(results[i]), errs[i], len(data))
		}
	}
	<-f.Done()
	if n := f.Readers(); n != 0 {
		t.Errorf("Readers() after every Close = %d, want 0", n)
	}
	if n := gf.file.closes.Load(); n != 1 {
		t.Errorf("file closed %d times, want 1", n)
	}
}

// A reader that never reads costs the writer nothing, and a reader that
// keeps up sees each chunk as soon as it is written and io.EOF as soon as
// the fill returns.
func TestStalledReaderDoesNotStopWriter(t *testing.T) {
	const chunk, chunks = 32 << 10, 64
	data := pattern(chunk * chunks)
	file := tempFile(t)
	var g Group
	ack := make(chan struct{})
	f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error {
		f.Begin(file, Meta{Size: int64(len(data))})
		for i := range chunks {
			if _, err := f.Write(data[i*chunk : (i+1)*chunk]); err != nil {
				return err
			}
			<-ack // the fast reader got chunk i before chunk i+1 exists
		}
		return nil
	})
	stalled := f.NewReader(t.Context())
	fast := f.NewReader(t.Context())
	buf := make([]byte, chunk)
	for i := range chunks {
		if _, err := io.ReadFull(fast, buf); err != nil {
			t.Fatalf("fast reader, chunk %d: %v", i, err)
		}
		if !bytes.Equal(buf, data[i*chunk:(i+1)*chunk]) {
			t.Fatalf("fast reader, chunk %d: wrong bytes", i)
		}
		ack <- struct{}{}
	}
	<-f.Done() // the stalled reader has not read a byte
	if n, err := fast.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("fast.Read() at the end = %d, %v, want 0, io.EOF", n, err)
	}
	fast.Close()
	if n := file.closes.Load(); n != 0 {
		t.Errorf("file closed %d times while a reader holds it, want 0", n)
	}
	got, err := readAll(stalled)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stalled reader read %d bytes, %v; want %d, nil", len(got), err, len(data))
	}
	stalled.Close()
	if n := file.closes.Load(); n != 1 {
		t.Errorf("file closed %d times after the last reader, want 1", n)
	}
}

func TestFillFailure(t *testing.T) {
	data := pattern(100_000)
	errUpstream := errors.New("upstream: connection reset")
	tests := []struct {
		name      string
		fill      func(file File) FillFunc
		wantBytes int    // bytes readers get before the error
		wantErr   error  // errors.Is target, if set
		wantText  string // substring of the error
	}{
		{
			name: "error mid-way",
			fill: func(file File) FillFunc {
				return func(ctx context.Context, f *Flight) error {
					f.Begin(file, Meta{Size: int64(len(data))})
					if err := writeChunks(f, data[:40_000], 4096); err != nil {
						return err
					}
					return errUpstream
				}
			},
			wantBytes: 40_000,
			wantErr:   errUpstream,
		},
		{
			name: "error before Begin",
			fill: func(File) FillFunc {
				return func(ctx context.Context, f *Flight) error { return errUpstream }
			},
			wantErr: errUpstream,
		},
		{
			name: "panic mid-way",
			fill: func(file File) FillFunc {
				return func(ctx context.Context, f *Flight) error {
					f.Begin(file, Meta{Size: -1})
					if err := writeChunks(f, data[:1000], 4096); err != nil {
						return err
					}
					panic("index out of range in the parser")
				}
			},
			wantBytes: 1000,
			wantText:  "index out of range in the parser",
		},
		{
			name: "panic before Begin",
			fill: func(File) FillFunc {
				return func(ctx context.Context, f *Flight) error { panic(errUpstream) }
			},
			wantErr:  errUpstream, // PanicError unwraps an error value
			wantText: "fill panicked",
		},
		{
			name: "Goexit",
			fill: func(file File) FillFunc {
				return func(ctx context.Context, f *Flight) error {
					f.Begin(file, Meta{Size: -1})
					if err := writeChunks(f, data[:10], 4096); err != nil {
						return err
					}
					runtime.Goexit()
					return nil
				}
			},
			wantBytes: 10,
			wantErr:   errGoexit,
		},
		{
			name: "nil after a short write",
			fill: func(file File) FillFunc {
				return func(ctx context.Context, f *Flight) error {
					f.Begin(file, Meta{Size: int64(len(data))})
					return writeChunks(f, data[:len(data)-1], 4096)
				}
			},
			wantBytes: len(data) - 1,
			wantText:  "returned after 99999 of 100000 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Group
			file := tempFile(t)
			gate := make(chan struct{})
			fill := tt.fill(file)
			f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error {
				<-gate
				return fill(ctx, f)
			})
			early := f.NewReader(t.Context()) // joined before Begin
			defer early.Close()
			close(gate)
			<-f.Done()
			late := f.NewReader(t.Context()) // joined after the failure
			defer late.Close()
			for _, r := range []*Reader{early, late} {
				got, err := readAll(r)
				if !bytes.Equal(got, data[:tt.wantBytes]) {
					t.Errorf("read %d bytes, want the %d written", len(got), tt.wantBytes)
				}
				checkErr(t, err, tt.wantErr, tt.wantText)
				if errors.Is(err, io.EOF) {
					t.Errorf("read error %v is io.EOF on a failed flight", err)
				}
			}
			checkErr(t, f.Err(), tt.wantErr, tt.wantText)
			if tt.wantBytes == 0 {
				if _, err := late.Wait(); err == nil {
					t.Errorf("Wait() = nil error on a flight that failed before Begin")
				}
			}
		})
	}
}

func checkErr(t *testing.T, err, want error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil, want a failure")
	}
	if want != nil && !errors.Is(err, want) {
		t.Errorf("error = %v, want errors.Is %v", err, want)
	}
	if text != "" && !strings.Contains(err.Error(), text) {
		t.Errorf("error = %v, want it to mention %q", err, text)
	}
}

func TestPanicErrorCarriesStack(t *testing.T) {
	var g Group
	f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error { panic("boom") })
	<-f.Done()
	var pe *PanicError
	if !errors.As(f.Err(), &pe) {
		t.Fatalf("Err() = %v, want a *PanicError", f.Err())
	}
	if pe.Value != "boom" || !bytes.Contains(pe.Stack, []byte("TestPanicErrorCarriesStack")) {
		t.Errorf("PanicError = %v, %q; want boom and a stack naming the fill", pe.Value, pe.Stack)
	}
}

func TestFillContextOutlivesCaller(t *testing.T) {
	type ctxKey struct{}
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "request-1"))
	var g Group
	var gotValue any
	gf := newGatedFill(t, pattern(100))
	f, _ := g.Do(ctx, "k", func(fctx context.Context, f *Flight) error {
		gotValue = fctx.Value(ctxKey{})
		return gf.fill(fctx, f)
	})
	r := f.NewReader(ctx)
	cancel() // the first client hangs up
	if _, err := r.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait() on the cancelled caller's reader = %v, want context.Canceled", err)
	}
	r.Close()
	other := f.NewReader(t.Context())
	defer other.Close()
	gf.open()
	got, err := readAll(other)
	if err != nil || len(got) != 100 {
		t.Errorf("other reader read %d bytes, %v; want 100, nil", len(got), err)
	}
	<-f.Done()
	if box := gf.ctxErrAtFinish.Load().(errBox); box.err != nil {
		t.Errorf("fill ctx.Err() after the caller cancelled = %v, want nil", box.err)
	}
	if gotValue != "request-1" {
		t.Errorf("fill ctx value = %v, want the caller's request-1", gotValue)
	}
}

func TestAbort(t *testing.T) {
	errNoReader := errors.New("no reader left")
	tests := []struct {
		name  string
		cause error
		want  error
	}{
		{"nil cause", nil, ErrAborted},
		{"given cause", errNoReader, errNoReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Group
			file := tempFile(t)
			f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error {
				f.Begin(file, Meta{Size: 10})
				if _, err := f.Write([]byte("abc")); err != nil {
					return err
				}
				<-ctx.Done()
				return fmt.Errorf("read body: %w", ctx.Err())
			})
			r := f.NewReader(t.Context())
			defer r.Close()
			buf := make([]byte, 3)
			if _, err := io.ReadFull(r, buf); err != nil {
				t.Fatalf("ReadFull() = %v", err)
			}
			f.Abort(tt.cause)
			<-f.Done()
			n, err := r.Read(buf)
			if n != 0 || !errors.Is(err, tt.want) || !errors.Is(err, context.Canceled) {
				t.Errorf("Read() after Abort(%v) = %d, %v, want 0 and an error wrapping %v and context.Canceled", tt.cause, n, err, tt.want)
			}
		})
	}
}

// A fill that finds the file cached (groupcache's second check) returns nil
// without Begin: readers are told to read the cache.
func TestFillWithoutFile(t *testing.T) {
	var g Group
	gate := make(chan struct{})
	f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error {
		<-gate
		return nil
	})
	r := f.NewReader(t.Context())
	defer r.Close()
	close(gate)
	if _, err := r.Wait(); !errors.Is(err, ErrNoFile) {
		t.Errorf("Wait() = %v, want ErrNoFile", err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, ErrNoFile) {
		t.Errorf("Read() = %d, %v, want 0, ErrNoFile", n, err)
	}
	if err := f.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
}

// The file stays open for readers that outlive the fill and is closed once
// by the last of them; a reader joining after that is sent to the cache.
func TestFileLifetime(t *testing.T) {
	var g Group
	gf := newGatedFill(t, pattern(5000))
	f, _ := g.Do(t.Context(), "k", gf.fill)
	r1 := f.NewReader(t.Context())
	gf.open()
	<-f.Done()
	r2 := f.NewReader(t.Context()) // after Done, but r1 keeps the file open
	got, err := readAll(r2)
	if err != nil || len(got) != 5000 {
		t.Errorf("r2 after Done read %d bytes, %v; want 5000, nil", len(got), err)
	}
	r1.Close()
	if n := gf.file.closes.Load(); n != 0 {
		t.Errorf("file closed %d times while r2 is open, want 0", n)
	}
	r2.Close()
	r2.Close() // idempotent
	if n := gf.file.closes.Load(); n != 1 {
		t.Errorf("file closed %d times after the last reader, want 1", n)
	}
	r3 := f.NewReader(t.Context())
	defer r3.Close()
	if _, err := r3.Wait(); !errors.Is(err, ErrNoFile) {
		t.Errorf("Wait() after the file was closed = %v, want ErrNoFile", err)
	}
	if n, err := r2.Read(make([]byte, 1)); n != 0 || !errors.Is(err, errClosed) {
		t.Errorf("Read() on a closed reader = %d, %v, want 0, errClosed", n, err)
	}
	if n := f.Readers(); n != 1 {
		t.Errorf("Readers() = %d, want 1 (r3)", n)
	}
}

func TestWriteGuards(t *testing.T) {
	var g Group
	file := tempFile(t)
	var beforeBegin, pastSize error
	var secondBegin any
	f, _ := g.Do(t.Context(), "k", func(ctx context.Context, f *Flight) error {
		_, beforeBegin = f.Write([]byte("x"))
		f.Begin(file, Meta{Size: 2})
		func() {
			defer func() { secondBegin = recover() }()
			f.Begin(file, Meta{Size: 2})
		}()
		_, pastSize = f.Write([]byte("xyz"))
		_, err := f.Write([]byte("xy"))
		return err
	})
	<-f.Done()
	if beforeBegin == nil {
		t.Errorf("Write() before Begin = nil, want an error")
	}
	if secondBegin == nil {
		t.Errorf("second Begin did not panic")
	}
	if pastSize == nil {
		t.Errorf("Write() past Meta.Size = nil, want an error")
	}
	if err := f.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	if _, err := f.Write([]byte("z")); err == nil {
		t.Errorf("Write() after the fill returned = nil, want an error")
	}
}

func TestRange(t *testing.T) {
	var g Group
	var flights []*Flight
	gate := make(chan struct{})
	for _, key := range []string{"a", "b", "c"} {
		f, _ := g.Do(t.Context(), key, func(ctx context.Context, f *Flight) error { <-gate; return nil })
		flights = append(flights, f)
	}
	seen := map[string]bool{}
	g.Range(func(key string, f *Flight) bool {
		seen[key] = f.Key() == key
		return true
	})
	if len(seen) != 3 || !seen["a"] || !seen["b"] || !seen["c"] {
		t.Errorf("Range() saw %v, want a, b, c", seen)
	}
	close(gate)
	for _, f := range flights {
		<-f.Done()
	}
}

// Every goroutine the package starts ends: synctest.Test fails if any
// goroutine of the bubble is still blocked when the test function returns.
func TestNoGoroutineLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		data := pattern(64 << 10)
		for i, result := range []error{nil, errors.New("cut")} {
			gf := newGatedFill(t, data)
			gf.result = result
			f, _ := g.Do(t.Context(), fmt.Sprint("k", i), gf.fill)
			ctx, leave := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for range 8 {
				r := f.NewReader(t.Context())
				wg.Go(func() { defer r.Close(); readAll(r) })
			}
			quitter := f.NewReader(ctx)
			wg.Go(func() { defer quitter.Close(); readAll(quitter) })
			stalled := f.NewReader(t.Context())
			close(gf.begin)
			<-gf.half
			synctest.Wait() // every reader waits for the second half
			leave()
			gf.open()
			wg.Wait()
			<-f.Done()
			stalled.Close()
		}
		if n := g.Len(); n != 0 {
			t.Errorf("Len() = %d, want 0", n)
		}
	})
}

func TestLenAndLookupOnEmptyGroup(t *testing.T) {
	var g Group
	if g.Len() != 0 || g.Lookup("x") != nil {
		t.Errorf("zero Group: Len() = %d, Lookup() = %p, want 0, nil", g.Len(), g.Lookup("x"))
	}
}
