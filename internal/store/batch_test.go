package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"
)

// batchWrite writes data to rel through b with CreateTemp and Commit, as
// the fetcher does.
func batchWrite(t *testing.T, b *Batch, rel, data string, m Meta) {
	t.Helper()
	f, err := b.CreateTemp(rel)
	if err != nil {
		t.Fatalf("CreateTemp(%q) = %v", rel, err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(f, rel, m); err != nil {
		t.Fatalf("Commit(%q) = %v, want nil", rel, err)
	}
}

func TestBatchRecordsOnlyAfterFlush(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	b := s.NewBatch()
	const rel = "arch/core/os/x86_64/a-1-1-any.pkg.tar.zst"
	lm := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	batchWrite(t, b, rel, "hello", Meta{SHA256: "abc", LastModified: lm})

	// In the tree and the index at once, for readers...
	if got, err := os.ReadFile(filepath.Join(dir, "tree", rel)); err != nil || string(got) != "hello" {
		t.Fatalf("ReadFile(%q) = %q, %v; want hello", rel, got, err)
	}
	if info, _ := os.Stat(filepath.Join(dir, "tree", rel)); !info.ModTime().Equal(lm) {
		t.Errorf("mtime = %v, want %v", info.ModTime(), lm)
	}
	if m, err := s.Stat(rel); err != nil || m.SHA256 != "abc" || m.Size != 5 {
		t.Errorf("Stat(%q) = %+v, %v; want size 5, sha abc", rel, m, err)
	}
	if n, by := b.Pending(); n != 1 || by != 5 {
		t.Errorf("Pending() = %d, %d; want 1, 5", n, by)
	}
	// ...but not in badger, not even through an access-time flush.
	s.Touch(rel)
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(filePrefix + rel); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of %s before Flush: err = %v, want ErrNotFound", rel, err)
	}
	b.Put("sync/x", []byte("1"))
	if _, err := s.Get("sync/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Put key before Flush: err = %v, want ErrNotFound", err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files; want none (the temp file has no name)", len(left))
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	if _, err := s.Get(filePrefix + rel); err != nil {
		t.Errorf("record of %s after Flush: %v", rel, err)
	}
	if v, err := s.Get("sync/x"); err != nil || string(v) != "1" {
		t.Errorf("Get(sync/x) = %q, %v; want 1", v, err)
	}
	s.Close()
	s = open(t, dir, Options{})
	if m, err := s.Stat(rel); err != nil || m.SHA256 != "abc" {
		t.Errorf("after reopen Stat(%q) = %+v, %v; want sha abc kept", rel, m, err)
	}
}

// A crash before Flush (here: the store closed without it) leaves the
// file, but never a record vouching for its bytes.
func TestBatchUnflushedIsHashedAgain(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	batchWrite(t, b, "d/f", "bytes", Meta{SHA256: "abc"})
	s.Touch("d/f")
	s.Close()

	s = open(t, dir, Options{})
	m, err := s.Stat("d/f")
	if err != nil || m.Size != 5 || m.SHA256 != "" {
		t.Errorf("Stat(d/f) after a crash = %+v, %v; want size 5 and no sha256", m, err)
	}
}

func TestBatchCommitCases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, dir string, s *Store, b *Batch) // between the batch's first commit and the one tested
	}{
		{"new file", func(*testing.T, string, *Store, *Batch) {}},
		{"replaces a file", func(t *testing.T, dir string, s *Store, b *Batch) {
			if err := s.WriteFile("d/f", []byte("old bytes"), Meta{SHA256: "old"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"folder removed since", func(t *testing.T, dir string, s *Store, b *Batch) {
			if err := s.Remove("d/other"); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "tree/d")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			b := s.NewBatch()
			batchWrite(t, b, "d/other", "x", Meta{})
			tc.before(t, dir, s, b)
			batchWrite(t, b, "d/f", "new", Meta{SHA256: "new"})
			if err := b.Close(); err != nil {
				t.Fatalf("Close() = %v, want nil", err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "tree/d/f")); err != nil || string(got) != "new" {
				t.Errorf("d/f = %q, %v; want new", got, err)
			}
			if m, err := s.Stat("d/f"); err != nil || m.SHA256 != "new" || m.Size != 3 {
				t.Errorf("Stat(d/f) = %+v, %v; want sha new, size 3", m, err)
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "tree/d"))
			for _, e := range entries {
				if e.Name() != "f" && e.Name() != "other" {
					t.Errorf("tree/d holds %s", e.Name())
				}
			}
		})
	}
}

// A file removed, or committed durably, after its batch commit keeps no
// record from the batch (Flush must not resurrect it or overwrite).
func TestBatchFlushSkipsReplaced(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	b := s.NewBatch()
	batchWrite(t, b, "d/removed", "x", Meta{SHA256: "x"})
	batchWrite(t, b, "d/rewritten", "y", Meta{SHA256: "batch"})
	if err := s.Remove("d/removed"); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("d/rewritten", []byte("z"), Meta{SHA256: "durable"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(filePrefix + "d/removed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("record of a removed file after Flush: err = %v, want ErrNotFound", err)
	}
	if m, _ := s.Stat("d/rewritten"); m.SHA256 != "durable" {
		t.Errorf("Stat(d/rewritten).SHA256 = %q, want durable", m.SHA256)
	}
	s.Close()
	s = open(t, dir, Options{})
	if m, _ := s.Stat("d/rewritten"); m.SHA256 != "durable" {
		t.Errorf("after reopen Stat(d/rewritten).SHA256 = %q, want durable", m.SHA256)
	}
}

// An unnamed temp file that is not committed leaves nothing anywhere.
func TestBatchTempNotCommitted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	b := s.NewBatch()
	f, err := b.CreateTemp("d/f")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("partial")
	os.Remove(f.Name()) // as the fetcher does after a failure
	f.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "tree/d"} {
		if left, _ := os.ReadDir(filepath.Join(dir, d)); len(left) != 0 {
			t.Errorf("%s holds %d files after an uncommitted write", d, len(left))
		}
	}
	if _, err := s.Stat("d/f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(d/f) err = %v, want ErrNotFound", err)
	}
}

func TestBatchConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	b := s.NewBatch()
	var wg stdsync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				rel := fmt.Sprintf("d/%d-%d", w, i)
				f, err := b.CreateTemp(rel)
				if err != nil {
					t.Error(err)
					return
				}
				f.WriteString(rel)
				if err := b.Commit(f, rel, Meta{SHA256: rel}); err != nil {
					t.Error(err)
				}
				f.Close()
				if i%10 == 0 {
					if err := b.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{})
	for w := range 4 {
		for i := range 25 {
			rel := fmt.Sprintf("d/%d-%d", w, i)
			if m, err := s.Stat(rel); err != nil || m.SHA256 != rel {
				t.Errorf("Stat(%q) = %+v, %v; want sha %q", rel, m, err, rel)
			}
		}
	}
}
