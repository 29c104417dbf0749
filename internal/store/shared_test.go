package store

import (
	"fmt"
	"os"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"
)

// readShared reads a SharedFile whole, as sendfile would: by offset,
// without moving a shared position.
func readShared(t *testing.T, f *SharedFile, size int64) string {
	t.Helper()
	buf := make([]byte, size)
	n, err := syscall.Pread(f.Fd(), buf, 0)
	if err != nil || int64(n) != size {
		t.Fatalf("pread = %d, %v; want %d bytes", n, err, size)
	}
	return string(buf)
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

func TestHeldFileFollowsRewrites(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.WriteFile("a/f", []byte("version one"), Meta{})
	f1, m, ok := held(s, "a/f")
	if !ok || readShared(t, f1, m.Size) != "version one" {
		t.Fatalf("held = %v, %+v", ok, m)
	}
	again, _, _ := held(s, "a/f")
	if again != f1 {
		t.Error("a second Hit opened the file again, want the held one")
	}
	again.Release()
	// A rewrite retires the held file: the next use sees the new bytes,
	// while a response still sending the old one keeps its descriptor.
	s.WriteFile("a/f", []byte("version two, longer"), Meta{})
	f2, m2, _ := held(s, "a/f")
	if got := readShared(t, f2, m2.Size); got != "version two, longer" {
		t.Errorf("after a rewrite: %q", got)
	}
	if got := readShared(t, f1, m.Size); got != "version one" {
		t.Errorf("the old file while still in use: %q", got)
	}
	f1.Release()
	f2.Release()
	if _, _, ok := held(s, "a/missing"); ok {
		t.Error("Hit of a missing file: ok")
	}
}

func TestHeldFileClosesRetired(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	before := openFDs(t)
	for i := range 50 {
		rel := fmt.Sprintf("a/f%d", i)
		s.WriteFile(rel, []byte(rel), Meta{})
		f, _, _ := held(s, rel)
		f.Release()
	}
	if got := openFDs(t); got < before+50 {
		t.Errorf("%d descriptors open while 50 files are held, want at least %d", got, before+50)
	}
	for i := range 50 {
		s.Remove(fmt.Sprintf("a/f%d", i))
	}
	if got := openFDs(t); got > before+1 { // +1: the folder's root
		t.Errorf("%d descriptors open after the files were removed, want %d", got, before)
	}
	if got := s.held.Load(); got != 0 {
		t.Errorf("held = %d after removing every file, want 0", got)
	}
}

// Readers racing a writer that rewrites the file always get one whole
// version, never a mix or a closed descriptor.
func TestHeldFileRace(t *testing.T) {
	s := open(t, t.TempDir(), Options{MemorySize: 1 << 20, MemoryFileMax: 1500}) // the 1000-byte version in memory, the others open
	versions := []string{strings.Repeat("a", 1000), strings.Repeat("b", 3000), strings.Repeat("c", 2000)}
	s.WriteFile("a/f", []byte(versions[0]), Meta{})
	var wg stdsync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				data, f, m, ok := s.Hit("a/f", time.Now())
				if !ok {
					continue // between remove and write
				}
				got := string(data)
				if f != nil {
					got = readShared(t, f, m.Size)
					f.Release()
				}
				if got != versions[0] && got != versions[1] && got != versions[2] {
					t.Errorf("read %d bytes starting %q: not a whole version", len(got), got[:min(len(got), 5)])
					return
				}
			}
		})
	}
	for i := range 300 {
		if err := s.WriteFile("a/f", []byte(versions[i%3]), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// held is Hit's open file: with no memory budget, every hit is one.
func held(s *Store, rel string) (*SharedFile, Meta, bool) {
	_, f, m, ok := s.Hit(rel, time.Now())
	return f, m, ok && f != nil
}

// inMemory is Hit's answer from memory, false when it answers with an
// open file instead (released here).
func inMemory(s *Store, rel string) ([]byte, Meta, bool) {
	data, f, m, ok := s.Hit(rel, time.Now())
	if f != nil {
		f.Release()
		return nil, Meta{}, false
	}
	return data, m, ok
}
