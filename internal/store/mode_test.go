package store

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Every way a file enters the tree leaves it readable by other users
// (nginx, rsyncd), folders traversable, whatever the umask; meta/,
// tmp/ and staging/ stay private; a tree from before is fixed at start.
func TestTreeModes(t *testing.T) {
	old := syscall.Umask(0o077) // the strictest an operator might run with
	defer syscall.Umask(old)
	for _, c := range []struct {
		name          string
		private       bool
		file, dir     os.FileMode
		handFile, hDr os.FileMode
	}{
		{"public", false, 0o644, 0o755, 0o600, 0o700},
		{"private", true, 0o600, 0o700, 0o644, 0o755},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// A tree written before, with the other modes.
			os.MkdirAll(filepath.Join(dir, "tree/old/os"), c.hDr)
			os.Chmod(filepath.Join(dir, "tree/old"), c.hDr)
			os.WriteFile(filepath.Join(dir, "tree/old/os/a.pkg.tar.zst"), []byte("old"), c.handFile)
			s, err := Open(dir, Options{PrivateTree: c.private})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			f, _ := s.CreateTemp("fill-*")
			f.WriteString("fill")
			if err := s.Commit(f, "arch/core/os/x86_64/fill.pkg.tar.zst", Meta{}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := s.WriteFile("arch/extra/os/x86_64/extra.db.tar.gz", []byte("db"), Meta{}); err != nil {
				t.Fatal(err)
			}
			if err := s.Symlink("extra.db.tar.gz", "arch/extra/os/x86_64/extra.db"); err != nil {
				t.Fatal(err)
			}
			b := s.NewBatch()
			bf, err := b.CreateTemp("arch/mirror/os/x86_64/synced.pkg.tar.zst")
			if err != nil {
				t.Fatal(err)
			}
			bf.WriteString("synced")
			if err := b.Commit(bf, "arch/mirror/os/x86_64/synced.pkg.tar.zst", Meta{}); err != nil {
				t.Fatal(err)
			}
			bf.Close()
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			b.Close()

			filepath.WalkDir(filepath.Join(dir, "tree"), func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				info, _ := os.Lstat(p)
				switch {
				case info.Mode()&fs.ModeSymlink != 0:
				case d.IsDir() && info.Mode().Perm() != c.dir:
					t.Errorf("folder %s: mode %04o, want %04o", p, info.Mode().Perm(), c.dir)
				case !d.IsDir() && info.Mode().Perm() != c.file:
					t.Errorf("file %s: mode %04o, want %04o", p, info.Mode().Perm(), c.file)
				}
				return nil
			})
			for _, private := range []string{"meta", "tmp", "staging"} {
				if info, _ := os.Stat(filepath.Join(dir, private)); info.Mode().Perm() != 0o700 {
					t.Errorf("%s/: mode %04o, want 0700", private, info.Mode().Perm())
				}
			}
		})
	}
}
