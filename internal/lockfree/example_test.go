package lockfree_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mirrord/mirrord/internal/lockfree"
)

// The proxy's miss path: every client asking for the same file at once runs
// this, and one fill serves them all.
func Example() {
	dir, err := os.MkdirTemp("", "tree")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	upstream := "hello from the mirror\n"

	var g lockfree.Group
	serve := func(ctx context.Context, key string, w io.Writer) error {
		f, _ := g.Do(ctx, key, func(ctx context.Context, f *lockfree.Flight) error {
			final := filepath.Join(dir, filepath.Base(key))
			if _, err := os.Stat(final); err == nil {
				return nil // a flight stored it after our miss: readers get ErrNoFile
			}
			tmp, err := os.CreateTemp(dir, ".part-*")
			if err != nil {
				return fmt.Errorf("fetch %s: %w", key, err)
			}
			f.Begin(tmp, lockfree.Meta{Size: int64(len(upstream)), ContentType: "text/plain"})
			if _, err := io.Copy(f, strings.NewReader(upstream)); err != nil {
				os.Remove(tmp.Name())
				return fmt.Errorf("fetch %s: %w", key, err)
			}
			// Verify and fsync here; the flight closes tmp after the last reader.
			if err := os.Rename(tmp.Name(), final); err != nil {
				return fmt.Errorf("store %s: %w", key, err)
			}
			return nil
		})
		r := f.NewReader(ctx) // a client hanging up ends its own wait, not the fill
		defer r.Close()
		if _, err := r.Wait(); errors.Is(err, lockfree.ErrNoFile) {
			// The flight ended before we joined (or found the file
			// cached): serve the file from the tree.
			data, err := os.ReadFile(filepath.Join(dir, filepath.Base(key)))
			if err == nil {
				_, err = w.Write(data)
			}
			return err
		} else if err != nil {
			return err
		}
		_, err := io.Copy(w, r) // or http.ServeContent(w, req, key, meta.ModTime, r)
		return err
	}

	if err := serve(context.Background(), "archlinux/core/os/x86_64/core.db", os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output: hello from the mirror
}
