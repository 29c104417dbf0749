package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/fsobj"
	"github.com/mirrord/mirrord/internal/upstream"
)

// sharedEnv is a node over the shared storage shared: a filesystem
// backend of store.Objects in a folder of its own, which several envs
// (nodes) may share.
func sharedEnv(t *testing.T, shared *fsobj.Tree) *env {
	t.Helper()
	return newEnvShared(t, 1, config.Cache{}, upstream.Options{StallTimeout: 30 * time.Second}, shared)
}

// openShared is a shared storage in a folder of its own, and the folder.
func openShared(t *testing.T) (*fsobj.Tree, string) {
	t.Helper()
	dir := t.TempDir()
	tree, err := fsobj.Open(dir, fsobj.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	return tree, dir
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A file fetched upstream on one node is put in the shared storage, with
// its sha256, and marked shared in the tree; a second node serves it from
// there without asking its upstream.
func TestSharedFillAndShare(t *testing.T) {
	shared, _ := openShared(t)
	a := sharedEnv(t, shared)
	data := a.put("shared-1.0-1-x86_64.pkg.tar.zst", 70_000)
	key := "archlinux/core/os/x86_64/shared-1.0-1-x86_64.pkg.tar.zst"
	if code, body, _, err := a.get("shared-1.0-1-x86_64.pkg.tar.zst"); err != nil || code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("node a: %d, %d bytes, %v", code, len(body), err)
	}
	waitFor(t, "the file in the shared storage, and marked so", func() bool {
		m, err := shared.Stat(context.Background(), key)
		sm, serr := a.h.store.Stat(key)
		return err == nil && m.SHA256 == sum(data) && m.Size == int64(len(data)) && serr == nil && sm.Shared
	})

	b := sharedEnv(t, shared) // its upstream's tree is empty
	if code, body, _, err := b.get("shared-1.0-1-x86_64.pkg.tar.zst"); err != nil || code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("node b: %d, %d bytes, %v", code, len(body), err)
	}
	if n := b.upstreamRequests("shared-1.0-1-x86_64.pkg.tar.zst"); n != 0 {
		t.Errorf("node b asked its upstream %d times for a file in the shared storage", n)
	}
}

// An object whose bytes do not match its own metadata (bit rot, a
// truncated write by another tool) is never served whole: its client
// gets a cut body, the object is deleted, and the next request fetches
// the file upstream and puts it back.
func TestSharedCorruptCopy(t *testing.T) {
	shared, dir := openShared(t)
	e := sharedEnv(t, shared)
	name := "rot-1.0-1-x86_64.pkg.tar.zst"
	data := e.put(name, 50_000)
	key := "archlinux/core/os/x86_64/" + name
	if err := shared.Put(context.Background(), key, bytes.NewReader(data), store.ObjectMeta{Size: int64(len(data)), SHA256: sum(data)}); err != nil {
		t.Fatal(err)
	}
	// Flip a byte in place: the xattr still says the old sha256.
	path := filepath.Join(dir, "tree", key)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[100] ^ 0xff}, 100)
	f.Close()

	code, body, _, err := e.get(name)
	if err == nil && code == 200 && len(body) == len(data) {
		t.Fatalf("a corrupt object was served whole (equal to the file: %v)", bytes.Equal(body, data))
	}
	waitFor(t, "the corrupt object deleted", func() bool {
		_, err := shared.Stat(context.Background(), key)
		return errors.Is(err, store.ErrNotFound)
	})
	code, body, _, err = e.getSettled(name)
	if err != nil || code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("after the corrupt copy: %d, %d bytes, %v; want upstream's file", code, len(body), err)
	}
	if n := e.upstreamRequests(name); n != 1 {
		t.Errorf("upstream asked %d times; want 1", n)
	}
	waitFor(t, "the good copy back in the shared storage", func() bool {
		m, err := shared.Stat(context.Background(), key)
		return err == nil && m.SHA256 == sum(data)
	})
}
