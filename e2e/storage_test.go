package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/s3test"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// storageConfig is proxyConfig's upstream and repos over s3's bucket
// (storage.backend s3), its keys in files; extra is more YAML for the
// s3 block.
func storageConfig(t *testing.T, up interface{ Addr() string }, s3 *s3test.Server, extra string) string {
	t.Helper()
	dir := t.TempDir()
	access, secret := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	os.WriteFile(access, []byte(s3.AccessKey+"\n"), 0o600)
	os.WriteFile(secret, []byte(s3.SecretKey+"\n"), 0o600)
	return fmt.Sprintf(`
upstream: {retries: 0}
storage:
  backend: s3
  s3:
    endpoint: %s
    bucket: %s
    prefix: tree
    path_style: true
    access_key_file: %s
    secret_key_file: %s
%s
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
`, s3.Endpoint, s3.Bucket, access, secret, extra, up.Addr())
}

// TestSharedStorage: nodes over one bucket. A package one node fetched
// upstream is in the bucket, under the tree's layout, with its sha256;
// a second node, and that node again after losing its disk, serve it
// from the bucket without asking upstream. A copy in the bucket that is
// not the file the db names is never served whole: it is deleted and
// the file fetched upstream.
func TestSharedStorage(t *testing.T) {
	requireTool(t, "repo-add", "bsdtar")
	s3 := s3test.Start(t)
	bucket, err := s3obj.New(s3obj.Options{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: "tree", PathStyle: true, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	hello := buildPackage(t, repoDir, testPackage{Name: "hello", Version: "1.0-1", Size: 300_000})
	other := buildPackage(t, repoDir, testPackage{Name: "other", Version: "1.0-1", Size: 50_000})
	repoAdd(t, repoDir, "core", hello, other)
	want, err := os.ReadFile(filepath.Join(repoDir, hello))
	if err != nil {
		t.Fatal(err)
	}
	cfg := storageConfig(t, up, s3, "")
	path := "/archlinux/core/os/x86_64/" + hello
	key := "archlinux/core/os/x86_64/" + hello
	upPath := "/core/os/x86_64/" + hello
	getBody := func(d *daemon) {
		t.Helper()
		code, body, _ := d.get(path)
		if code != 200 || !bytes.Equal(body, want) {
			t.Fatalf("GET %s from %s = %d, %d bytes; want 200 and the upstream's %d bytes", path, d.URL, code, len(body), len(want))
		}
	}

	a := startDaemon(t, "", cfg)
	getBody(a)
	eventually(t, 30*time.Second, "the package in the bucket", func() bool {
		_, err := bucket.Stat(context.Background(), key)
		return err == nil
	})
	meta, err := bucket.Stat(context.Background(), key)
	if err != nil || meta.Size != int64(len(want)) || meta.SHA256 != sha256hex(want) {
		t.Fatalf("the bucket's %s: %+v, %v; want %d bytes, sha256 %s", key, meta, err, len(want), sha256hex(want))
	}

	b := startDaemon(t, "", cfg)
	getBody(b)
	if n := up.Requests(upPath); n != 1 {
		t.Errorf("upstream served %s %d times to two nodes; want 1 (the second from the bucket)", hello, n)
	}
	// Counted once the file is committed, which may be just after the
	// client has its last byte.
	eventually(t, 10*time.Second, "mirrord_storage_filled_files_total 1 on the second node", func() bool {
		_, m, _ := b.get("/metrics")
		return bytes.Contains(m, []byte(`mirrord_storage_filled_files_total{repo="archlinux/core"} 1`))
	})

	// The second node loses its disk and starts again: it serves at once.
	b.Kill()
	os.RemoveAll(b.DataDir)
	b = startDaemon(t, b.DataDir, cfg)
	getBody(b)
	if n := up.Requests(upPath); n != 1 {
		t.Errorf("after a restart on an empty disk upstream served %s %d times; want 1", hello, n)
	}

	// A copy in the bucket that is not what the db names (its metadata
	// says so before a byte is read): never served; deleted, and the file
	// fetched upstream in the same request, then put in the bucket.
	otherKey := "archlinux/core/os/x86_64/" + other
	bad := bytes.Repeat([]byte("x"), 50_000)
	if err := bucket.Put(context.Background(), otherKey, bytes.NewReader(bad), store.ObjectMeta{Size: int64(len(bad)), SHA256: sha256hex(bad)}); err != nil {
		t.Fatal(err)
	}
	otherWant, _ := os.ReadFile(filepath.Join(repoDir, other))
	// The node checks a file against the db it serves, as pacman -Sy
	// makes it fetch.
	if code, _, _ := b.get("/archlinux/core/os/x86_64/core.db"); code != 200 {
		t.Fatalf("core.db = %d", code)
	}
	// A miss is committed just after its client has the last byte: until
	// then the node has no db to check by, and only the copy's own
	// metadata (which the bad copy's matches) to go on.
	eventually(t, 10*time.Second, "core.db in the node's tree", func() bool {
		_, err := os.Stat(filepath.Join(b.DataDir, "tree/archlinux/core/os/x86_64/core.db"))
		return err == nil
	})
	if code, body, _ := b.get("/archlinux/core/os/x86_64/" + other); code != 200 || !bytes.Equal(body, otherWant) {
		t.Errorf("with a bad copy in the bucket: %d, %d bytes (the bad copy's: %v); want 200 and upstream's %d", code, len(body), bytes.Equal(body, bad), len(otherWant))
	}
	if n := up.Requests("/core/os/x86_64/" + other); n != 1 {
		t.Errorf("upstream served %s %d times; want 1, after the bad copy", other, n)
	}
	if !strings.Contains(b.Log(), "bad copy in the shared storage: deleted") {
		t.Errorf("the node did not log the bad copy it deleted")
	}
	eventually(t, 30*time.Second, "the bad copy in the bucket replaced by upstream's", func() bool {
		m, err := bucket.Stat(context.Background(), otherKey)
		return err == nil && m.SHA256 == sha256hex(otherWant)
	})
}

// TestSharedStorageRedirect: with storage.s3.redirect a hit on a package
// in the bucket is a 307 to a presigned URL of it, which serves the same
// bytes without credentials and which the real pacman follows; a
// database is always served by the node.
func TestSharedStorageRedirect(t *testing.T) {
	requireTool(t, "pacman", "repo-add", "bsdtar")
	s3 := s3test.Start(t)
	up := newUpstream(t)
	repoDir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(repoDir, 0o755)
	hello := buildPackage(t, repoDir, testPackage{Name: "hello", Version: "1.0-1", Size: 200_000})
	repoAdd(t, repoDir, "core", hello)
	want, _ := os.ReadFile(filepath.Join(repoDir, hello))

	d := startDaemon(t, "", storageConfig(t, up, s3, "    redirect: true\n    redirect_expiry: 10m"))
	path := "/archlinux/core/os/x86_64/" + hello
	if code, body, _ := d.get(path); code != 200 || !bytes.Equal(body, want) {
		t.Fatalf("first GET (a miss) = %d, %d bytes; want 200 and the package", code, len(body))
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var loc string
	eventually(t, 30*time.Second, "a redirect once the package is in the bucket", func() bool {
		resp, err := noFollow.Get(d.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc = resp.Header.Get("Location")
		return resp.StatusCode == http.StatusTemporaryRedirect
	})
	if !strings.HasPrefix(loc, s3.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") || !strings.Contains(loc, "X-Amz-Expires=600") {
		t.Errorf("Location = %q; want a URL of the bucket's endpoint, signed, expiring in 600s", loc)
	}
	resp, err := http.Get(loc) // no credentials: the signature is all
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Errorf("GET of the presigned URL = %d, %d bytes; want 200 and the package", resp.StatusCode, len(body))
	}
	if code, _, _ := d.get("/archlinux/core/os/x86_64/core.db"); code != 200 {
		t.Errorf("core.db = %d; a database is served by the node, never redirected", code)
	}

	redirects := func() string {
		_, m, _ := d.get("/metrics")
		for _, l := range strings.Split(string(m), "\n") {
			if strings.HasPrefix(l, `mirrord_requests_total{repo="archlinux/core",result="redirected"} `) {
				return l
			}
		}
		return ""
	}
	before := redirects()
	p := newPacmanRoot(t, d.URL+"/archlinux/$repo/os/$arch", "core")
	p.mustRun("-Sy")
	p.mustRun("-S", "hello")
	if after := redirects(); after == before {
		t.Errorf("pacman -S was not redirected: %q before and after", after)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "db", "local", "hello-1.0-1")); err != nil {
		t.Errorf("pacman -S through the redirect did not install hello: %v", err)
	}
	if n := up.Requests("/core/os/x86_64/" + hello); n != 1 {
		t.Errorf("upstream served %s %d times; want 1", hello, n)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
