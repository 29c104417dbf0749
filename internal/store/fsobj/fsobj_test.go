package fsobj_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

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
