package store_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
)

// A manifest is replaced only from the version read: of two writers that
// read the same one, one wins; an object that does not decode, or is
// over the limit, reads as replaceable, not as an error.
func TestManifest(t *testing.T) {
	ctx := context.Background()
	b, err := fsobj.Open(t.TempDir(), fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	type doc struct{ N int }
	var got doc
	if v, ok, err := store.ReadManifest(ctx, b, "m", 1<<10, &got); v != "" || ok || err != nil {
		t.Fatalf("ReadManifest of nothing = %q, %v, %v; want no version", v, ok, err)
	}
	if err := store.WriteManifest(ctx, b, "m", doc{1}, ""); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteManifest(ctx, b, "m", doc{9}, ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second first write = %v; want ErrExists", err)
	}
	v1, ok, err := store.ReadManifest(ctx, b, "m", 1<<10, &got)
	if v1 == "" || !ok || err != nil || got.N != 1 {
		t.Fatalf("ReadManifest = %q, %v, %v, %+v; want version 1's", v1, ok, err, got)
	}
	if err := store.WriteManifest(ctx, b, "m", doc{2}, v1); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteManifest(ctx, b, "m", doc{3}, v1); !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("a write from a version replaced = %v; want ErrVersionMismatch", err)
	}
	if _, _, _ = store.ReadManifest(ctx, b, "m", 1<<10, &got); got.N != 2 {
		t.Errorf("after the race the manifest is %+v; want the winner's, 2", got)
	}
	for name, body := range map[string][]byte{"not json": []byte("{"), "too large": bytes.Repeat([]byte(" "), 2<<10)} {
		if err := b.Put(ctx, "bad", bytes.NewReader(body), store.BytesMeta(body)); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := store.ReadManifest(ctx, b, "bad", 1<<10, &got); v == "" || ok || err != nil {
			t.Errorf("ReadManifest of %s = %q, %v, %v; want its version, not ok, no error", name, v, ok, err)
		}
	}
}

// Each manifest keeps the files of the one before it and drops those of
// the one before that, unless it names them again.
func TestSuccession(t *testing.T) {
	files := func(sums ...string) map[string]store.ManifestFile {
		m := map[string]store.ManifestFile{}
		for i, sum := range sums {
			m[string(rune('0'+i))] = store.ManifestFile{SHA256: sum}
		}
		return m
	}
	previous, drop := store.Succession(files("b", "a", "b"), []string{"x", "a", "y", "z"}, files("y", "c"))
	if want := []string{"a", "b"}; !slices.Equal(previous, want) {
		t.Errorf("previous = %v; want %v (sorted, each once)", previous, want)
	}
	if want := []string{"x", "z"}; !slices.Equal(drop, want) {
		t.Errorf("drop = %v; want %v (not named again, not kept)", drop, want)
	}
	if previous, drop := store.Succession(nil, nil, files("a")); len(previous) != 0 || len(drop) != 0 {
		t.Errorf("the first successor = %v, %v; want nothing kept or dropped", previous, drop)
	}
}
