package fsobj_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
	"github.com/mirrord/mirrord/internal/store/objtest"
)

func TestObjects(t *testing.T) {
	objtest.Run(t, func(t *testing.T) store.Objects {
		tr, err := fsobj.Open(t.TempDir(), fsobj.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	})
}

// TestLayout: an object is the file at tree/{key}, with the tree's modes,
// its mtime upstream's, and no temp file left behind.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		private      bool
		file, folder os.FileMode
	}{{false, 0o644, 0o755}, {true, 0o600, 0o700}} {
		dir := t.TempDir()
		tr, err := fsobj.Open(dir, fsobj.Options{PrivateTree: tc.private})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		b := []byte("hello")
		sum := sha256.Sum256(b)
		m := store.ObjectMeta{Size: 5, SHA256: hex.EncodeToString(sum[:])}
		if err := tr.Put(t.Context(), "archlinux/core/os/x86_64/f", bytes.NewReader(b), m); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "tree", "archlinux/core/os/x86_64/f")
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("ReadFile(%s) = %q, %v", p, got, err)
		}
		if info, _ := os.Stat(p); info.Mode().Perm() != tc.file {
			t.Errorf("private=%v: file mode %v, want %v", tc.private, info.Mode().Perm(), tc.file)
		}
		for _, d := range []string{"archlinux", "archlinux/core/os", "archlinux/core/os/x86_64"} {
			if info, _ := os.Stat(filepath.Join(dir, "tree", d)); info.Mode().Perm() != tc.folder {
				t.Errorf("private=%v: folder %s mode %v, want %v", tc.private, d, info.Mode().Perm(), tc.folder)
			}
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
			t.Errorf("tmp/ holds %d files after Put", len(left))
		}
	}
}

// TestFileWithoutMetadata: a file that reached the tree without Put (an
// older mirrord, rsync without -X) is an object with its size and mtime.
func TestFileWithoutMetadata(t *testing.T) {
	tr, dir := openTree(t)
	p := filepath.Join(dir, "tree", "old.db")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	m, err := tr.Stat(t.Context(), "old.db")
	if err != nil || m.Size != 3 || m.SHA256 != "" || !m.LastModified.Equal(mtime) {
		t.Errorf("Stat = %+v, %v; want size 3, no sha256, mtime %v", m, err, mtime)
	}
}

// TestFailedPutLeavesNoTemp: a Put that fails, or a PutIfAbsent that
// loses, takes its temp file away.
func TestFailedPutLeavesNoTemp(t *testing.T) {
	tr, dir := openTree(t)
	b := []byte("hello")
	sum := sha256.Sum256(b)
	m := store.ObjectMeta{Size: 5, SHA256: hex.EncodeToString(sum[:])}
	if err := tr.Put(t.Context(), "a/f", bytes.NewReader(b[:4]), m); err == nil {
		t.Fatal("short Put succeeded")
	}
	if err := tr.PutIfAbsent(t.Context(), "a/f", bytes.NewReader(b), m); err != nil {
		t.Fatal(err)
	}
	if err := tr.PutIfAbsent(t.Context(), "a/f", bytes.NewReader(b), m); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second PutIfAbsent = %v, want ErrExists", err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files", len(left))
	}
}

// Metadata someone else wrote into the xattr is read as a hint: a sha256
// that is no sha256 is none, and an oversized attribute is an error, not
// an ever larger buffer.
func TestForeignMetadata(t *testing.T) {
	tr, dir := openTree(t)
	p := filepath.Join(dir, "tree", "foreign.db")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.mirrord.meta", []byte(`{"sha256":"../../etc/passwd"}`), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	if m, err := tr.Stat(t.Context(), "foreign.db"); err != nil || m.SHA256 != "" || m.Size != 3 {
		t.Errorf("Stat = %+v, %v; want size 3 and no sha256", m, err)
	}
	big := append([]byte(`{"etag":"`), bytes.Repeat([]byte("x"), 32<<10)...)
	if err := unix.Setxattr(p, "user.mirrord.meta", append(big, `"}`...), 0); err != nil {
		t.Skipf("no xattr of 32 KiB here: %v", err)
	}
	if _, err := tr.Stat(t.Context(), "foreign.db"); err == nil {
		t.Error("Stat read a 32 KiB metadata attribute")
	}
}

// openTree is a tree in a temp dir, and the dir.
func openTree(t *testing.T) (*fsobj.Tree, string) {
	t.Helper()
	dir := t.TempDir()
	tr, err := fsobj.Open(dir, fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, dir
}
