package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCommitAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lm := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if err := s.WriteFile("arch/core/os/x86_64/a-1-1-any.pkg.tar.zst", []byte("hello"), Meta{SHA256: "abc", LastModified: lm}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Stat("arch/core/os/x86_64/a-1-1-any.pkg.tar.zst")
	if err != nil || m.Size != 5 || m.SHA256 != "abc" || !m.LastModified.Equal(lm) {
		t.Fatalf("Stat = %+v, %v; want size 5, sha abc, last-modified %v", m, err, lm)
	}
	info, err := os.Stat(filepath.Join(dir, "tree/arch/core/os/x86_64/a-1-1-any.pkg.tar.zst"))
	if err != nil || !info.ModTime().Equal(lm) {
		t.Fatalf("file mtime = %v, %v; want %v", info.ModTime(), err, lm)
	}
	if s.Size() != 5 || s.Files() != 1 {
		t.Errorf("Size, Files = %d, %d; want 5, 1", s.Size(), s.Files())
	}
	s.Close()

	s = open(t, dir, Options{})
	m, err = s.Stat("arch/core/os/x86_64/a-1-1-any.pkg.tar.zst")
	if err != nil || m.SHA256 != "abc" {
		t.Fatalf("after reopen Stat = %+v, %v; want sha abc kept", m, err)
	}
}

func TestReopenReconciles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.WriteFile("d/gone", []byte("x"), Meta{})
	s.WriteFile("d/kept", []byte("y"), Meta{SHA256: "k"})
	s.Close()
	// Between runs: one file deleted by hand, one placed by hand, and a
	// temp file left by a crash.
	os.Remove(filepath.Join(dir, "tree/d/gone"))
	os.WriteFile(filepath.Join(dir, "tree/d/placed"), []byte("zz"), 0o644)
	os.WriteFile(filepath.Join(dir, "tmp/fill-123"), []byte("partial"), 0o644)

	s = open(t, dir, Options{})
	if _, err := s.Stat("d/gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(gone) err = %v, want ErrNotFound", err)
	}
	if m, err := s.Stat("d/placed"); err != nil || m.Size != 2 {
		t.Errorf("Stat(placed) = %+v, %v; want size 2", m, err)
	}
	if m, _ := s.Stat("d/kept"); m.SHA256 != "k" {
		t.Errorf("Stat(kept).SHA256 = %q, want k", m.SHA256)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ after reopen holds %d entries, want 0", len(left))
	}
	if _, err := s.Get(filePrefix + "d/gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("metadata of a vanished file kept: %v", err)
	}
}

func TestOpenStaysInTree(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("secret"), 0o644)
	os.MkdirAll(filepath.Join(dir, "tree/a"), 0o755)
	os.Symlink(secret, filepath.Join(dir, "tree/a/abs-link"))
	os.Symlink("../../secret", filepath.Join(dir, "tree/a/rel-link"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "tree/a/passwd"))
	os.WriteFile(filepath.Join(dir, "tree/a/ok"), []byte("ok"), 0o644)
	os.Symlink("ok", filepath.Join(dir, "tree/a/ok-link"))

	for _, rel := range []string{"../secret", "a/../../secret", "/etc/passwd", "a/abs-link", "a/rel-link", "a/passwd", "a/./ok", "a//ok", "a/ok\x00", `a\ok`, ""} {
		if f, err := s.Open(rel); err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded, want refusal", rel)
		}
	}
	for _, rel := range []string{"a/ok", "a/ok-link"} {
		f, err := s.Open(rel)
		if err != nil {
			t.Errorf("Open(%q) = %v, want the file", rel, err)
			continue
		}
		f.Close()
	}
}

func TestOpenAfterFolderRecreated(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	s.WriteFile("a/b/f1", []byte("one"), Meta{})
	f, err := s.Open("a/b/f1") // caches a/b's root
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.RemoveAll(filepath.Join(dir, "tree/a/b"))
	s.WriteFile("a/b/f2", []byte("two"), Meta{})
	f, err = s.Open("a/b/f2")
	if err != nil {
		t.Fatalf("Open in a folder made again = %v", err)
	}
	f.Close()
	if _, err := s.Open("a/b/f1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a removed file = %v, want ErrNotFound", err)
	}
	// Made again by hand, with a file placed by hand: Stat finds it.
	os.RemoveAll(filepath.Join(dir, "tree/a/b"))
	os.MkdirAll(filepath.Join(dir, "tree/a/b"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree/a/b/f3"), []byte("three"), 0o644)
	if m, err := s.Stat("a/b/f3"); err != nil || m.Size != 5 {
		t.Errorf("Stat of a file placed by hand in a folder made again = %+v, %v", m, err)
	}
}

func TestSymlink(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.WriteFile("r/os/x/r.db.tar.gz", []byte("db1"), Meta{})
	if err := s.Symlink("r.db.tar.gz", "r/os/x/r.db"); err != nil {
		t.Fatal(err)
	}
	s.WriteFile("r/os/x/r.db.tar.zst", []byte("db2"), Meta{})
	if err := s.Symlink("r.db.tar.zst", "r/os/x/r.db"); err != nil {
		t.Fatalf("replacing a link: %v", err)
	}
	f, err := s.Open("r/os/x/r.db")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b bytes.Buffer
	b.ReadFrom(f)
	if b.String() != "db2" {
		t.Errorf("r.db reads %q, want db2", b.String())
	}
	if _, err := s.Stat("r/os/x/r.db"); err != nil {
		t.Errorf("Stat of a link = %v", err)
	}
	if _, ok := s.index.Load("r/os/x/r.db"); ok {
		t.Error("a symlink was indexed: its entry would go stale when the target changes")
	}
	if err := s.Symlink("../../../../etc/passwd", "r/os/x/evil"); err == nil {
		t.Error("Symlink out of the folder was accepted")
	}
}

func TestTouchIsBatched(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.WriteFile("a/f", []byte("x"), Meta{FetchedAt: time.Unix(1000, 0)})
	before, _ := s.Get(filePrefix + "a/f")
	s.Touch("a/f")
	if after, _ := s.Get(filePrefix + "a/f"); !bytes.Equal(before, after) {
		t.Fatal("Touch wrote to badger; it must only update memory")
	}
	if m, _ := s.Stat("a/f"); time.Since(m.LastAccess) > time.Minute {
		t.Errorf("Stat after Touch: LastAccess = %v, want now", m.LastAccess)
	}
	if err := s.flushAccess(); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Get(filePrefix + "a/f"); bytes.Equal(before, after) {
		t.Error("flushAccess did not write the new access time")
	}
}

func TestKV(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.Put("job/2", []byte("b"))
	s.Put("job/1", []byte("a"))
	s.Put("sync/x", []byte("c"))
	var got []string
	s.Scan("job/", func(k string, v []byte) error { got = append(got, k+"="+string(v)); return nil })
	if strings.Join(got, ",") != "1=a,2=b" {
		t.Errorf("Scan(job/) = %v, want [1=a 2=b]", got)
	}
	s.Delete("job/1")
	if _, err := s.Get("job/1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete err = %v, want ErrNotFound", err)
	}
}

// TestKillDuringWrite kills a process in the middle of a store write and
// checks that the reopened store shows no partial file.
func TestKillDuringWrite(t *testing.T) {
	if os.Getenv("MIRRORD_STORE_WRITER") != "" {
		writerProcess()
		return
	}
	dir := t.TempDir()
	for i := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrite$")
		cmd.Env = append(os.Environ(), "MIRRORD_STORE_WRITER="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The writer prints a line once a temp file is half written.
		buf := make([]byte, 64)
		if _, err := out.Read(buf); err != nil {
			t.Fatalf("run %d: writer said nothing: %v", i, err)
		}
		cmd.Process.Kill()
		cmd.Wait()

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat("big/file"); !errors.Is(err, ErrNotFound) {
			t.Errorf("run %d: partial file visible: %v", i, err)
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
			t.Errorf("run %d: tmp/ holds %d entries after restart", i, len(left))
		}
		s.Close()
	}
}

func writerProcess() {
	s, err := Open(os.Getenv("MIRRORD_STORE_WRITER"), Options{})
	if err != nil {
		panic(err)
	}
	f, err := s.CreateTemp("fill-*")
	if err != nil {
		panic(err)
	}
	f.Write(make([]byte, 1<<20))
	os.Stdout.WriteString("half\n")
	select {} // wait to be killed before Commit
}

func TestReadlink(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.WriteFile("r/os/x/r.db.tar.gz", []byte("db1"), Meta{})
	s.Symlink("r.db.tar.gz", "r/os/x/r.db")
	os.Symlink("../../../../etc/passwd", filepath.Join(s.dir, treeDir, "r/os/x/evil")) // by hand
	os.Symlink("sub/f", filepath.Join(s.dir, treeDir, "r/os/x/deep"))
	for _, tt := range []struct {
		rel, want string
		ok        bool
	}{
		{"r/os/x/r.db", "r/os/x/r.db.tar.gz", true},
		{"r/os/x/r.db.tar.gz", "", false}, // a file
		{"r/os/x/none", "", false},
		{"r/os/x/evil", "", false},
		{"r/os/x/deep", "", false},
		{"../r/os/x/r.db", "", false},
	} {
		if got, ok := s.Readlink(tt.rel); got != tt.want || ok != tt.ok {
			t.Errorf("Readlink(%q) = %q, %v; want %q, %v", tt.rel, got, ok, tt.want, tt.ok)
		}
	}
}

func TestContentFollowsLinkTarget(t *testing.T) {
	s := open(t, t.TempDir(), Options{MemorySize: 1 << 20})
	s.WriteFile("r/r.db.tar.gz", []byte("one"), Meta{})
	s.Symlink("r.db.tar.gz", "r/r.db")
	if _, _, ok := inMemory(s, "r/r.db"); ok {
		t.Error("Hit served a symlink from memory")
	}
	s.WriteFile("r/r.db.tar.gz", []byte("two"), Meta{})
	f, err := s.Open("r/r.db")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if string(b) != "two" {
		t.Errorf("r.db reads %q after the target changed, want two", b)
	}
}

func TestContent(t *testing.T) {
	s := open(t, t.TempDir(), Options{MemorySize: 10, MemoryFileMax: 6})
	s.WriteFile("a/small", []byte("hello"), Meta{})
	s.WriteFile("a/big", []byte("1234567"), Meta{})
	s.WriteFile("a/other", []byte("world"), Meta{})
	if data, m, ok := inMemory(s, "a/small"); !ok || string(data) != "hello" || m.Size != 5 {
		t.Fatalf("Hit(small) from memory = %q, %+v, %v", data, m, ok)
	}
	if _, _, ok := inMemory(s, "a/big"); ok {
		t.Error("Hit(big) from memory held a file over MemoryFileMax")
	}
	if _, _, ok := inMemory(s, "a/other"); !ok {
		t.Error("Hit(other) from memory refused within budget")
	}
	s.WriteFile("a/third", []byte("xyz"), Meta{})
	if _, _, ok := inMemory(s, "a/third"); ok {
		t.Error("Hit(third) from memory went over MemorySize")
	}
	// A rewrite retires the old bytes at once.
	s.WriteFile("a/small", []byte("HELLO"), Meta{})
	if data, _, ok := inMemory(s, "a/small"); !ok || string(data) != "HELLO" {
		t.Errorf("after a rewrite Hit from memory = %q, %v; want HELLO", data, ok)
	}
	s.Remove("a/other")
	if got := s.memUsed.Load(); got != 5 {
		t.Errorf("memory used = %d, want 5 after a remove", got)
	}
}
