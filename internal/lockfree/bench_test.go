package lockfree

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// BenchmarkFlight writes a 64 MiB file in 32 KiB chunks while N readers
// follow it. MB/s is the file's rate from first byte to last reader done;
// read-MB/s adds up every reader; writer-ms is how long the fill took.
func BenchmarkFlight(b *testing.B) {
	const size, chunk = 64 << 20, 32 << 10
	data := pattern(chunk)
	for _, readers := range []int{0, 1, 8, 64} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			b.SetBytes(size)
			dir := b.TempDir()
			var g Group
			var writer time.Duration
			for b.Loop() {
				file, err := os.CreateTemp(dir, "flight-*")
				if err != nil {
					b.Fatal(err)
				}
				gate := make(chan struct{})
				f, _ := g.Do(context.Background(), "k", func(ctx context.Context, f *Flight) error {
					<-gate // let every reader join before the first byte
					start := time.Now()
					defer func() { writer += time.Since(start) }()
					f.Begin(file, Meta{Size: size})
					for off := 0; off < size; off += chunk {
						if _, err := f.Write(data); err != nil {
							return err
						}
					}
					return os.Remove(file.Name())
				})
				var wg sync.WaitGroup
				for range readers {
					r := f.NewReader(context.Background())
					wg.Go(func() {
						defer r.Close()
						buf := make([]byte, chunk)
						n, err := io.CopyBuffer(io.Discard, onlyReader{r}, buf)
						if err != nil || n != size {
							b.Errorf("reader got %d bytes, %v; want %d, nil", n, err, size)
						}
					})
				}
				close(gate)
				wg.Wait()
				<-f.Done()
				if err := f.Err(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := b.Elapsed().Seconds()
			b.ReportMetric(float64(readers)*size*float64(b.N)/1e6/elapsed, "read-MB/s")
			b.ReportMetric(float64(writer.Milliseconds())/float64(b.N), "writer-ms")
		})
	}
}

// onlyReader hides io.Discard's ReaderFrom shortcut so that the copy uses
// the 32 KiB buffer, like an HTTP response writer would.
type onlyReader struct{ io.Reader }

// BenchmarkDoHit measures joining a flight in progress: the path every
// coalesced request takes.
func BenchmarkDoHit(b *testing.B) {
	var g Group
	gate := make(chan struct{})
	defer close(gate)
	fill := func(ctx context.Context, f *Flight) error { <-gate; return nil }
	g.Do(context.Background(), "archlinux/extra/os/x86_64/linux-6.12.1-1-x86_64.pkg.tar.zst", fill)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, leader := g.Do(ctx, "archlinux/extra/os/x86_64/linux-6.12.1-1-x86_64.pkg.tar.zst", fill); leader {
				b.Error("Do() started a second flight")
			}
		}
	})
}
