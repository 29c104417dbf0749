package store

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// stage writes data to a new staged file called name.
func stage(t *testing.T, s *Store, name, data string) *StagedFile {
	t.Helper()
	f, err := s.CreateStaged(name)
	if err != nil {
		t.Fatalf("CreateStaged(%q): %v", name, err)
	}
	if _, err := io.WriteString(f, data); err != nil {
		t.Fatal(err)
	}
	return f
}

func listStaged(t *testing.T, s *Store) []string {
	t.Helper()
	names, err := s.ListStaged()
	if err != nil {
		t.Fatalf("ListStaged: %v", err)
	}
	return names
}

func readStaged(t *testing.T, s *Store, name string) string {
	t.Helper()
	f, err := s.OpenStaged(name)
	if err != nil {
		t.Fatalf("OpenStaged(%q): %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tmpFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, tmpDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A staged file is invisible until committed, then survives a restart
// private to mirrord's user; one never committed is gone after it.
func TestStagedCommitAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pkg := stage(t, s, "job1.pkg", "package")
	sig := stage(t, s, "job1.sig", "signature")
	lost := stage(t, s, "job2.pkg", "never acknowledged")
	if got := listStaged(t, s); len(got) != 0 {
		t.Errorf("ListStaged before commit = %q, want none", got)
	}
	if _, err := s.OpenStaged("job1.pkg"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenStaged(job1.pkg) before commit: %v, want ErrNotFound", err)
	}
	if err := s.CommitStaged(pkg, nil, sig); err != nil {
		t.Fatalf("CommitStaged: %v", err)
	}
	var head [3]byte
	if _, err := pkg.ReadAt(head[:], 0); err != nil || string(head[:]) != "pac" {
		t.Errorf("ReadAt after commit = %q, %v, want \"pac\"", head, err)
	}
	for _, f := range []*StagedFile{pkg, sig, lost} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, Options{})
	if got, want := listStaged(t, s), []string{"job1.pkg", "job1.sig"}; !slices.Equal(got, want) {
		t.Errorf("ListStaged after reopen = %q, want %q", got, want)
	}
	if got := readStaged(t, s, "job1.pkg"); got != "package" {
		t.Errorf("staged job1.pkg = %q, want \"package\"", got)
	}
	if n := tmpFiles(t, dir); n != 0 {
		t.Errorf("tmp/ holds %d files after reopen, want 0", n)
	}
	for _, p := range []string{"staging", "staging/job1.pkg", "staging/job1.sig"} {
		info, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, info.Mode().Perm(), want)
		}
	}
}

func TestStagedDiscard(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit bool
		close  bool
	}{
		{"uncommitted", false, false},
		{"uncommitted and closed", false, true},
		{"committed", true, false},
		{"committed and closed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			f := stage(t, s, "job.pkg", "data")
			if tc.commit {
				if err := s.CommitStaged(f); err != nil {
					t.Fatal(err)
				}
			}
			if tc.close {
				f.Close()
			}
			f.Discard()
			f.Discard()
			if got := listStaged(t, s); len(got) != 0 {
				t.Errorf("ListStaged after Discard = %q, want none", got)
			}
			if n := tmpFiles(t, dir); n != 0 {
				t.Errorf("tmp/ holds %d files after Discard, want 0", n)
			}
		})
	}
}

// Files a daemon from before left in {data_dir}/staging (hosted wrote it
// itself) are the store's to list and remove, and the folder is made
// private again.
func TestStagedFromBefore(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "staging"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "staging", "old.pkg"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	if got, want := listStaged(t, s), []string{"old.pkg"}; !slices.Equal(got, want) {
		t.Errorf("ListStaged = %q, want %q", got, want)
	}
	if info, _ := os.Stat(filepath.Join(dir, "staging")); info.Mode().Perm() != 0o700 {
		t.Errorf("staging/: mode %04o, want 0700", info.Mode().Perm())
	}
	if err := s.RemoveStaged("old.pkg"); err != nil {
		t.Fatalf("RemoveStaged(old.pkg): %v", err)
	}
	if err := s.RemoveStaged("old.pkg"); err != nil {
		t.Errorf("RemoveStaged(old.pkg) again = %v, want nil", err)
	}
	if got := listStaged(t, s); len(got) != 0 {
		t.Errorf("ListStaged after RemoveStaged = %q, want none", got)
	}
}

// A staged name is one file in staging/, never a path out of it.
func TestStagedNames(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	for _, name := range []string{"", ".", "..", "a/b", "../tree/x", "/abs", "nul\x00"} {
		if f, err := s.CreateStaged(name); err == nil {
			f.Discard()
			t.Errorf("CreateStaged(%q) = nil error, want one", name)
		}
		if _, err := s.OpenStaged(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenStaged(%q) = %v, want ErrNotFound", name, err)
		}
		if err := s.RemoveStaged(name); err == nil {
			t.Errorf("RemoveStaged(%q) = nil, want an error", name)
		}
	}
}
