package lockfree

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync/atomic"
	"testing"
)

// pattern returns n deterministic bytes that differ from chunk to chunk, so
// a reader that got bytes from the wrong offset is caught.
func pattern(n int) []byte {
	p := make([]byte, n)
	x := uint32(2463534242)
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}

// countingFile is an *os.File that counts its Close calls, to check that
// the flight closes its file once, after the fill and the last reader.
type countingFile struct {
	*os.File
	closes atomic.Int32
}

func (c *countingFile) Close() error {
	c.closes.Add(1)
	return c.File.Close()
}

func tempFile(tb testing.TB) *countingFile {
	tb.Helper()
	f, err := os.CreateTemp(tb.TempDir(), "flight-*")
	if err != nil {
		tb.Fatal(err)
	}
	return &countingFile{File: f}
}

// writeChunks writes data through f in chunks of size chunk.
func writeChunks(f *Flight, data []byte, chunk int) error {
	for len(data) > 0 {
		n := min(chunk, len(data))
		if _, err := f.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// gatedFill returns a fill that publishes data in two halves and waits on
// the gates between steps; each step is reported on its channel, so a test
// can join readers at a known stage.
type gatedFill struct {
	file                  *countingFile
	data                  []byte
	meta                  Meta
	begin, more, finish   chan struct{} // opened by the test
	begun, half, allBytes chan struct{} // closed by the fill
	fills                 atomic.Int32
	ctxErrAtFinish        atomic.Value // error or nil, the fill's ctx.Err() at the end
	result                error        // returned by the fill
	beforeReturn          func()       // if set, runs last (e.g. to panic)
}

func newGatedFill(tb testing.TB, data []byte) *gatedFill {
	return &gatedFill{
		file:     tempFile(tb),
		data:     data,
		meta:     Meta{Size: int64(len(data)), ContentType: "application/octet-stream"},
		begin:    make(chan struct{}),
		more:     make(chan struct{}),
		finish:   make(chan struct{}),
		begun:    make(chan struct{}),
		half:     make(chan struct{}),
		allBytes: make(chan struct{}),
	}
}

// open opens every gate not yet open: the fill runs to its end.
func (g *gatedFill) open() *gatedFill {
	for _, ch := range []chan struct{}{g.begin, g.more, g.finish} {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	return g
}

func (g *gatedFill) fill(ctx context.Context, f *Flight) error {
	g.fills.Add(1)
	<-g.begin
	f.Begin(g.file, g.meta)
	close(g.begun)
	mid := len(g.data) / 2
	if err := writeChunks(f, g.data[:mid], 4096); err != nil {
		return err
	}
	close(g.half)
	<-g.more
	if err := writeChunks(f, g.data[mid:], 4096); err != nil {
		return err
	}
	close(g.allBytes)
	<-g.finish
	g.ctxErrAtFinish.Store(errBox{ctx.Err()})
	if g.beforeReturn != nil {
		g.beforeReturn()
	}
	return g.result
}

type errBox struct{ err error }

// readAll reads r to its end; the error is nil only at a clean io.EOF.
func readAll(r *Reader) ([]byte, error) {
	var b bytes.Buffer
	_, err := io.Copy(&b, r)
	return b.Bytes(), err
}
