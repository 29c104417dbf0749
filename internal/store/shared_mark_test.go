package store

import (
	"testing"
)

// MarkShared records Meta.Shared durably, and only for a file that is
// indexed and whose record is durable (not one waiting for its Batch).
func TestMarkShared(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const rel = "arch/core/os/x86_64/a-1-1-any.pkg.tar.zst"
	if err := s.WriteFile(rel, []byte("hello"), Meta{SHA256: "abc"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.MarkShared("arch/core/os/x86_64/none-1-1-any.pkg.tar.zst"); ok || err != nil {
		t.Errorf("MarkShared of a file not in the tree = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.MarkShared(rel); !ok || err != nil {
		t.Fatalf("MarkShared = %v, %v; want true", ok, err)
	}
	if m, _ := s.Stat(rel); !m.Shared || m.SHA256 != "abc" {
		t.Errorf("after MarkShared: %+v; want shared, the rest kept", m)
	}

	// A file a Batch committed and has not flushed: its bytes may not be
	// durable, so its record may not reach badger.
	b := s.NewBatch()
	const lazy = "arch/core/os/x86_64/b-1-1-any.pkg.tar.zst"
	f, err := b.CreateTemp(lazy)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("world")
	if err := b.Commit(f, lazy, Meta{SHA256: "def"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.MarkShared(lazy); ok || err != nil {
		t.Errorf("MarkShared of a file its Batch has not flushed = %v, %v; want false", ok, err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.MarkShared(lazy); !ok || err != nil {
		t.Errorf("MarkShared after the Batch's flush = %v, %v; want true", ok, err)
	}
	s.Close()

	s = open(t, dir, Options{})
	for _, r := range []string{rel, lazy} {
		if m, err := s.Stat(r); err != nil || !m.Shared {
			t.Errorf("after reopen %s: %+v, %v; want shared", r, m, err)
		}
	}
}
