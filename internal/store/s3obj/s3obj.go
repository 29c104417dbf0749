package s3obj

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/store"
)

// maxConditional is the largest conditional put: S3's limit of one PUT.
// A conditional put is never a multipart upload, because not every store
// checks the condition on the upload's completion: SeaweedFS (the
// s3test.WeedVersion we test against) completes a multipart upload with
// If-None-Match: * over an existing object, and one with a stale If-Match,
// while it refuses both on a single PUT (objtest's large PutIfAbsent
// round caught it).
const maxConditional = 5 << 30

// User metadata of an object (sent as X-Amz-Meta-Mirrord-…).
const (
	metaSHA256       = "Mirrord-Sha256"
	metaETag         = "Mirrord-Etag"
	metaLastModified = "Mirrord-Last-Modified" // RFC 3339, nanoseconds
)

// Options configures New.
type Options struct {
	// Endpoint is the store's base URL, "https://s3.example.com" or
	// "http://127.0.0.1:8333": the scheme says whether to use TLS.
	Endpoint string
	Bucket   string
	// Prefix, if set, is the folder of the bucket the tree is under
	// ("mirrord" puts archlinux/… at mirrord/archlinux/…).
	Prefix string
	Region string
	// PathStyle addresses the bucket as {endpoint}/{bucket} rather than
	// {bucket}.{endpoint}; most self-hosted stores want it. Without it
	// the client chooses (virtual-host style for AWS).
	PathStyle bool
	AccessKey string
	SecretKey string
	// PartSize is the size of a multipart upload's parts; objects up to
	// it go in one PUT. Default 16 MiB; S3 wants at least 5 MiB.
	PartSize uint64
	// Transport, if set, carries the requests (tests; a custom TLS root).
	Transport http.RoundTripper
	// Registerer, if set, gets the mirrord_storage_* metrics.
	Registerer prometheus.Registerer
}

// Bucket is the S3 backend. All methods are safe for concurrent use.
type Bucket struct {
	core     minio.Core // its Client for most calls; Core.GetObject for one GET that gives headers and body together
	bucket   string
	prefix   string // "" or ending in "/"
	partSize uint64
	metrics  *metrics
}

var _ store.Objects = (*Bucket)(nil)

// New checks opts and makes a client; it does not contact the store.
func New(opts Options) (*Bucket, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", opts.Endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port], nothing more", opts.Endpoint)
	}
	if opts.Bucket == "" {
		return nil, errors.New("s3 bucket: empty")
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		if err := store.CleanPath(prefix); err != nil {
			return nil, fmt.Errorf("s3 prefix %q: %w", opts.Prefix, err)
		}
		prefix += "/"
	}
	lookup := minio.BucketLookupAuto
	if opts.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       opts.Region,
		BucketLookup: lookup,
		Transport:    opts.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", opts.Endpoint, err)
	}
	partSize := opts.PartSize
	if partSize == 0 {
		partSize = 16 << 20
	}
	return &Bucket{core: minio.Core{Client: c}, bucket: opts.Bucket, prefix: prefix, partSize: partSize, metrics: newMetrics(opts.Registerer)}, nil
}

// name is key's object name in the bucket.
func (b *Bucket) name(key string) (string, error) {
	if err := store.CleanPath(key); err != nil {
		return "", err
	}
	return b.prefix + key, nil
}

// Get opens the object at key: one GET, so its bytes and its metadata are
// of the same version.
func (b *Bucket) Get(ctx context.Context, key string) (_ io.ReadCloser, _ store.ObjectMeta, err error) {
	defer b.metrics.observe("get", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return nil, store.ObjectMeta{}, err
	}
	body, info, _, err := b.core.GetObject(ctx, b.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, store.ObjectMeta{}, b.fail("get", key, err)
	}
	meta, err := objectMeta(key, info)
	if err != nil {
		body.Close()
		return nil, store.ObjectMeta{}, err
	}
	return body, meta, nil
}

// GetRange opens length bytes of the object at key from offset.
func (b *Bucket) GetRange(ctx context.Context, key string, offset, length int64) (_ io.ReadCloser, err error) {
	defer b.metrics.observe("get", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("get %s bytes %d+%d: %w", key, offset, length, store.ErrInvalidRange)
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(offset, offset+length-1); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	body, _, _, err := b.core.GetObject(ctx, b.bucket, name, opts)
	if err != nil {
		return nil, b.fail("get", key, err)
	}
	return body, nil
}

// Stat is the metadata of the object at key (a HEAD).
func (b *Bucket) Stat(ctx context.Context, key string) (_ store.ObjectMeta, err error) {
	defer b.metrics.observe("stat", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return store.ObjectMeta{}, err
	}
	info, err := b.core.StatObject(ctx, b.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return store.ObjectMeta{}, b.fail("stat", key, err)
	}
	return objectMeta(key, info)
}

func objectMeta(key string, info minio.ObjectInfo) (store.ObjectMeta, error) {
	if info.Size < 0 {
		return store.ObjectMeta{}, fmt.Errorf("get %s: negative size %d", key, info.Size)
	}
	m := store.ObjectMeta{
		Size:    info.Size,
		SHA256:  store.ReadSHA256(info.UserMetadata[metaSHA256]),
		ETag:    info.UserMetadata[metaETag],
		Version: info.ETag,
	}
	if v := info.UserMetadata[metaLastModified]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return store.ObjectMeta{}, fmt.Errorf("get %s: metadata %s %q: %w", key, metaLastModified, v, err)
		}
		m.LastModified = t
	}
	return m, nil
}

// Put stores the object at key, replacing any. A body that fails its
// checks never reaches the store whole (store.CheckedReader holds back
// its last byte), so the upload fails and nothing is committed; minio-go
// aborts a failed multipart upload.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	_, err := b.put(ctx, key, r, meta, replace, "")
	return err
}

// PutIfAbsent stores the object at key unless the key holds one
// (store.ErrExists), by If-None-Match: * on the PUT, which the store
// decides, so exactly one of concurrent callers wins, whichever node they
// run on. It is always one PUT, never a multipart upload (see
// maxConditional), so it takes at most 5 GiB.
func (b *Bucket) PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	_, err := b.put(ctx, key, r, meta, ifAbsent, "")
	return err
}

// PutIfMatch stores the object at key if its ETag is version (the
// store.ObjectMeta.Version of Get and Stat), by If-Match on the PUT, which
// the store decides: exactly one of concurrent callers wins, whichever
// node they run on. The store answers 412 for another ETag and 404 for
// no object, both store.ErrVersionMismatch. One PUT, so at most 5 GiB
// (see maxConditional).
func (b *Bucket) PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error) {
	return b.put(ctx, key, r, meta, ifMatch, version)
}

// Copy stores the object at src under dst too, by a copy inside the
// store (CopyObject, one request, at most 5 GiB), with meta's metadata:
// src's size and sha256 are checked first, and the copy is of that
// version only (x-amz-copy-source-if-match), so a src replaced meanwhile
// fails the copy rather than be copied with the wrong metadata.
func (b *Bucket) Copy(ctx context.Context, src, dst string, meta store.ObjectMeta) (err error) {
	defer b.metrics.observe("copy", time.Now(), &err)
	from, err := b.name(src)
	if err != nil {
		return err
	}
	to, err := b.name(dst)
	if err != nil {
		return err
	}
	if err := store.CheckMeta(dst, meta); err != nil {
		return err
	}
	if meta.Size > maxConditional {
		return fmt.Errorf("copy %s to %s: %d bytes, over the %d of one copy", src, dst, meta.Size, int64(maxConditional))
	}
	info, err := b.core.StatObject(ctx, b.bucket, from, minio.StatObjectOptions{})
	if err != nil {
		return b.fail("copy", src, err)
	}
	cur, err := objectMeta(src, info)
	if err != nil {
		return err
	}
	if cur.Size != meta.Size || cur.SHA256 != meta.SHA256 {
		return fmt.Errorf("copy %s to %s: it is %d bytes, sha256 %q, not the %d, %q given", src, dst, cur.Size, cur.SHA256, meta.Size, meta.SHA256)
	}
	_, err = b.core.Client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: b.bucket, Object: to, UserMetadata: userMetadata(meta), ReplaceMetadata: true},
		minio.CopySrcOptions{Bucket: b.bucket, Object: from, MatchETag: info.ETag})
	if err != nil {
		return b.fail("copy", dst, err)
	}
	return nil
}

// userMetadata is what an object's metadata carries of meta.
func userMetadata(meta store.ObjectMeta) map[string]string {
	user := map[string]string{metaSHA256: meta.SHA256}
	if meta.ETag != "" {
		user[metaETag] = meta.ETag
	}
	if !meta.LastModified.IsZero() {
		user[metaLastModified] = meta.LastModified.UTC().Format(time.RFC3339Nano)
	}
	return user
}

// How put commits an object.
type condition int

const (
	replace  condition = iota
	ifAbsent           // If-None-Match: *
	ifMatch            // If-Match: {version}
)

// put uploads the object and returns its ETag.
func (b *Bucket) put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, how condition, version string) (_ string, err error) {
	defer b.metrics.observe("put", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return "", err
	}
	if err := store.CheckMeta(key, meta); err != nil {
		return "", err
	}
	if how == ifMatch && version == "" {
		return "", fmt.Errorf("put %s if version \"\": %w", key, store.ErrVersionMismatch)
	}
	opts := minio.PutObjectOptions{
		UserMetadata: userMetadata(meta),
		ContentType:  "application/octet-stream",
		PartSize:     b.partSize,
	}
	if how != replace && meta.Size > maxConditional {
		return "", fmt.Errorf("put %s conditionally: %d bytes, over the %d of one conditional PUT", key, meta.Size, int64(maxConditional))
	}
	switch how {
	case ifAbsent:
		opts.SetMatchETagExcept("*")
		opts.DisableMultipart = true
	case ifMatch:
		opts.SetMatchETag(version)
		opts.DisableMultipart = true
	}
	// The body is not an io.Seeker, so minio-go sends it once and never
	// retries it: a retried conditional PUT could answer "exists" to the
	// caller whose first attempt won.
	body := store.CheckedReader(key, r, meta)
	if meta.Size == 0 {
		// No last byte to hold back: check the (empty) body before the
		// request, which then sends nothing.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return "", err
		}
		body = eof{}
	}
	info, err := b.core.Client.PutObject(ctx, b.bucket, name, body, meta.Size, opts)
	if err != nil {
		status := minio.ToErrorResponse(err).StatusCode
		switch {
		case how == ifAbsent && status == http.StatusPreconditionFailed:
			return "", fmt.Errorf("put %s: %w", key, store.ErrExists)
		case how == ifMatch && status == http.StatusPreconditionFailed:
			return "", fmt.Errorf("put %s if version %q: %w", key, version, store.ErrVersionMismatch)
		case how == ifMatch && status == http.StatusNotFound && minio.ToErrorResponse(err).Code != minio.NoSuchBucket:
			return "", fmt.Errorf("put %s if version %q: none there: %w", key, version, store.ErrVersionMismatch)
		}
		// Among others, AWS's 409 ConditionalRequestConflict (a
		// conditional write racing another): not a mismatch, since the
		// other may have failed too; the caller tries again.
		return "", b.fail("put", key, err)
	}
	return info.ETag, nil
}

// List is every key under prefix, in byte order.
func (b *Bucket) List(ctx context.Context, prefix string) (_ []string, err error) {
	defer b.metrics.observe("list", time.Now(), &err)
	if err := store.CleanPath(prefix + "x"); err != nil { // as fsobj: prefix must start only clean keys
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	var keys []string
	for obj := range b.core.Client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, b.fail("list", prefix, obj.Err)
		}
		key := strings.TrimPrefix(obj.Key, b.prefix)
		if store.CleanPath(key) != nil {
			continue // put there by another tool ("a//b", "../x"): no key of the tree
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object at key; S3 answers the same whether it was
// there or not.
func (b *Bucket) Delete(ctx context.Context, key string) (err error) {
	defer b.metrics.observe("delete", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return err
	}
	if err := b.core.RemoveObject(ctx, b.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		return b.fail("delete", key, err)
	}
	return nil
}

// Presign is a URL that GETs the object at key without credentials
// until expiry has passed (storage.s3.redirect: a hit answered with 307
// to it). It is signed locally: no request, and no check that the
// object exists.
func (b *Bucket) Presign(ctx context.Context, key string, expiry time.Duration) (_ *url.URL, err error) {
	defer b.metrics.observe("presign", time.Now(), &err)
	name, err := b.name(key)
	if err != nil {
		return nil, err
	}
	u, err := b.core.Client.PresignedGetObject(ctx, b.bucket, name, expiry, nil)
	if err != nil {
		return nil, fmt.Errorf("presign %s: %w", key, err)
	}
	return u, nil
}

// fail wraps an S3 error, mapping a missing object to store.ErrNotFound
// and a range past its end to store.ErrInvalidRange.
func (b *Bucket) fail(op, key string, err error) error {
	switch resp := minio.ToErrorResponse(err); {
	case resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket:
		return fmt.Errorf("%s %s: %w", op, key, store.ErrNotFound)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%s %s: %w", op, key, store.ErrInvalidRange)
	}
	return fmt.Errorf("%s %s in bucket %s: %w", op, key, b.bucket, err)
}

// eof is an empty body that is not an io.Seeker (see put).
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
