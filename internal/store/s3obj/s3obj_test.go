package s3obj_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mirrord/mirrord/internal/s3test"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/store/objtest"
	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// partSize is S3's smallest, so that objtest.Large goes in three parts.
const partSize = 5 << 20

func newBucket(t *testing.T, srv *s3test.Server, prefix string) *s3obj.Bucket {
	t.Helper()
	b, err := s3obj.New(s3obj.Options{
		Endpoint: srv.Endpoint, Bucket: srv.Bucket, Prefix: prefix, Region: "us-east-1",
		PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: partSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

// TestObjects runs the suite against a real SeaweedFS, each subtest in a
// prefix of its own.
func TestObjects(t *testing.T) {
	srv := s3test.Start(t)
	objtest.Run(t, func(t *testing.T) store.Objects { return newBucket(t, srv, randomPrefix()) })
}

// TestBucketLayout: the bucket holds {prefix}/{key} with the metadata in
// x-amz-meta-mirrord-*, as a static web server or another tool sees it,
// and a large object went up in parts.
func TestBucketLayout(t *testing.T) {
	srv := s3test.Start(t)
	b := newBucket(t, srv, "/mirror/")
	ctx := t.Context()
	small := []byte("core.db bytes")
	large := make([]byte, objtest.Large)
	rand.Read(large)
	for key, body := range map[string][]byte{"archlinux/core/os/x86_64/core.db": small, "archlinux/extra/os/x86_64/big.pkg.tar.zst": large} {
		sum := sha256.Sum256(body)
		if err := b.Put(ctx, key, bytes.NewReader(body), store.ObjectMeta{Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), ETag: "up"}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for obj := range raw.ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		names = append(names, obj.Key)
	}
	want := []string{"mirror/archlinux/core/os/x86_64/core.db", "mirror/archlinux/extra/os/x86_64/big.pkg.tar.zst"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("bucket holds %q, want %q", names, want)
	}
	info, err := raw.StatObject(ctx, srv.Bucket, want[0], minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(small)
	if got := info.Metadata.Get("X-Amz-Meta-Mirrord-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("x-amz-meta-mirrord-sha256 = %q, want %x", got, sum)
	}
	if got := info.Metadata.Get("X-Amz-Meta-Mirrord-Etag"); got != "up" {
		t.Errorf("x-amz-meta-mirrord-etag = %q, want %q", got, "up")
	}
	// A multipart upload's ETag is "{md5 of the parts' md5s}-{parts}".
	info, err = raw.StatObject(ctx, srv.Bucket, want[1], minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("large object's ETag %q: not a 3-part upload", info.ETag)
	}
}

// TestCredentials: the server checks the key, so the suite's writes were
// authenticated for real.
func TestCredentials(t *testing.T) {
	srv := s3test.Start(t)
	bad := *srv
	bad.SecretKey = "wrong" + srv.SecretKey
	b := newBucket(t, &bad, "")
	sum := sha256.Sum256(nil)
	if err := b.Put(t.Context(), "k", bytes.NewReader(nil), store.ObjectMeta{SHA256: hex.EncodeToString(sum[:])}); err == nil {
		t.Error("Put with a wrong secret key succeeded")
	}
	if _, err := b.List(t.Context(), ""); err == nil {
		t.Error("List with a wrong secret key succeeded")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts s3obj.Options
	}{
		{"no scheme", s3obj.Options{Endpoint: "s3.example.com", Bucket: "b"}},
		{"ftp", s3obj.Options{Endpoint: "ftp://s3.example.com", Bucket: "b"}},
		{"path", s3obj.Options{Endpoint: "https://s3.example.com/x", Bucket: "b"}},
		{"user", s3obj.Options{Endpoint: "https://k:s@s3.example.com", Bucket: "b"}},
		{"no bucket", s3obj.Options{Endpoint: "https://s3.example.com"}},
		{"dotdot prefix", s3obj.Options{Endpoint: "https://s3.example.com", Bucket: "b", Prefix: "a/../b"}},
	} {
		if _, err := s3obj.New(tc.opts); err == nil {
			t.Errorf("%s: New(%+v) succeeded", tc.name, tc.opts)
		}
	}
}

// TestConditionalPutLimit: a conditional put over one PUT's 5 GiB is
// refused before any request (a multipart upload would not be
// conditional on every store).
func TestConditionalPutLimit(t *testing.T) {
	b, err := s3obj.New(s3obj.Options{Endpoint: "http://127.0.0.1:1", Bucket: "b", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	meta := store.ObjectMeta{Size: 5<<30 + 1, SHA256: strings.Repeat("0", 64)}
	err = b.PutIfAbsent(t.Context(), "big", strings.NewReader(""), meta)
	if err == nil || !strings.Contains(err.Error(), "over the") {
		t.Errorf("PutIfAbsent(5 GiB + 1) = %v, want refused for its size", err)
	}
}
