package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Misses in a folder must not disturb hits in it: a miss used to close the
// folder's cached root while other requests opened files through it, so
// that they failed with "file already closed" (a hit served as a miss, a
// spurious 404 in a hosted repo). A regression test.
func TestOpenConcurrentMissesAndHits(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const dir = "archlinux/core/os/x86_64"
	if err := s.WriteFile(dir+"/here.pkg.tar.zst", []byte("x"), Meta{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				name := dir + "/here.pkg.tar.zst"
				if g%2 == 1 {
					name = fmt.Sprintf("%s/missing-%d-%d.pkg.tar.zst", dir, g, i)
				}
				f, err := s.Open(name)
				switch {
				case err == nil:
					f.Close()
				case g%2 == 1 && errors.Is(err, ErrNotFound):
				default:
					errs <- fmt.Errorf("Open(%q) = %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
