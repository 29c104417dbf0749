package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// Objects is where the tree's bytes live: the filesystem tree
// (internal/store/fsobj) or an S3 bucket (internal/store/s3obj). A key is
// a tree path ("archlinux/core/os/x86_64/core.db", checked by CleanPath), so either
// backend holds the same layout and is itself a valid mirror.
//
// The contract, which internal/store/objtest checks against every backend:
// an object is visible complete or not at all (a reader never sees a
// prefix of a Put in progress, nor a mix of two Puts); a Put that fails
// leaves the key as it was; PutIfAbsent succeeds for exactly one of any
// number of concurrent callers, and so does PutIfMatch among callers that
// name the same version; List shows exactly what was put and not
// deleted. Methods are safe for concurrent use.
type Objects interface {
	// Get opens the whole object. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectMeta, error)
	// GetRange opens length bytes of the object from offset (fewer if the
	// object ends first); offset must be inside the object
	// (ErrInvalidRange otherwise).
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Put stores exactly meta.Size bytes read from r, whose sha256 must be
	// meta.SHA256, under key, replacing any object there. Anything else (r
	// fails, is shorter or longer, hashes otherwise, ctx ends) leaves the
	// key as it was.
	Put(ctx context.Context, key string, r io.Reader, meta ObjectMeta) error
	// PutIfAbsent is Put that fails with ErrExists, storing nothing, if
	// the key holds an object: among concurrent callers exactly one wins.
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta ObjectMeta) error
	// PutIfMatch is Put that replaces the object at key only if it is
	// still the version named (an ObjectMeta.Version from Get or Stat),
	// and fails with ErrVersionMismatch, storing nothing, if the key
	// holds another version or none: among concurrent callers that name
	// the same version exactly one wins. It returns the version it
	// stored, so that the winner can go on without reading the object
	// back (a read could already see the next writer's). A version may
	// come back again for the same bytes (see ObjectMeta.Version); an
	// empty version matches nothing.
	PutIfMatch(ctx context.Context, key string, r io.Reader, meta ObjectMeta, version string) (string, error)
	// Stat is the object's metadata.
	Stat(ctx context.Context, key string) (ObjectMeta, error)
	// List is every key that starts with prefix (a plain string prefix,
	// as in S3), in byte order.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object; a key that holds none is not an error.
	Delete(ctx context.Context, key string) error
	// Copy stores the object at src under dst too, replacing any object
	// there, with meta, which must be src's size and sha256 (an error
	// otherwise, dst left as it was): on S3 the bytes do not leave the
	// store. ErrNotFound if src holds nothing.
	Copy(ctx context.Context, src, dst string, meta ObjectMeta) error
}

// Sentinels of Objects, besides ErrNotFound (Get, GetRange, Stat).
var (
	ErrExists = errors.New("object exists")
	// ErrVersionMismatch is a PutIfMatch whose version is not the
	// object's (another writer came first, or the object is gone).
	ErrVersionMismatch = errors.New("object version does not match")
	ErrInvalidRange    = errors.New("range not inside the object")
	// ErrBadBody is a body that does not match its declared size or
	// sha256 (CheckedReader).
	ErrBadBody = errors.New("body does not match its metadata")
)

// ObjectMeta is what travels with an object's bytes, committed with them:
// the facts of the file, the same on every node (not its access time or
// when this node fetched it).
//
// Version is the backend's own: Get and Stat set it, and every Put ignores
// it.
type ObjectMeta struct {
	Size         int64
	SHA256       string    // lowercase hex
	ETag         string    // upstream's validator, if it gave one
	LastModified time.Time // upstream's, if it gave one
	// Version names what was stored at the key by one Put, for
	// PutIfMatch. It is opaque and not the same on two backends: S3's
	// ETag (of one PUT, the MD5 of the bytes, so two Puts of the same
	// bytes may share it: a caller to whom every write must count makes
	// each body differ), fsobj's a random token per Put.
	Version string
}

// CheckMeta refuses metadata a Put cannot honour: a negative size or a
// SHA256 that is not 64 lowercase hex digits.
func CheckMeta(key string, meta ObjectMeta) error {
	if meta.Size < 0 {
		return fmt.Errorf("put %s: negative size %d", key, meta.Size)
	}
	if len(meta.SHA256) != sha256.Size*2 || strings.ToLower(meta.SHA256) != meta.SHA256 {
		return fmt.Errorf("put %s: sha256 %q is not 64 lowercase hex digits", key, meta.SHA256)
	}
	if _, err := hex.DecodeString(meta.SHA256); err != nil {
		return fmt.Errorf("put %s: sha256 %q: %w", key, meta.SHA256, err)
	}
	return nil
}

// ReadSHA256 is a sha256 read back from a backend's metadata, which
// others may write too (the bucket and the tree are mirrors other tools
// serve and fill): one that is not 64 lowercase hex digits is no sha256.
func ReadSHA256(s string) string {
	if CheckMeta("", ObjectMeta{SHA256: s}) != nil {
		return ""
	}
	return s
}

// BytesMeta is the metadata of an object of b's bytes (its size and
// sha256), for a Put of a small object made in memory.
func BytesMeta(b []byte) ObjectMeta {
	sum := sha256.Sum256(b)
	return ObjectMeta{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

// CheckedReader passes r through and ends with io.EOF only if r gave
// exactly meta.Size bytes hashing to meta.SHA256; otherwise it returns an
// error naming key. It holds back the last byte until it has seen r end
// and checked the hash, so that a backend which commits as soon as the
// declared size has arrived (an HTTP PUT with Content-Length, the last part
// of a multipart upload) never receives a whole bad body: the upload fails
// one byte short instead.
func CheckedReader(key string, r io.Reader, meta ObjectMeta) io.Reader {
	return &checkedReader{key: key, r: r, want: meta.Size, sum: meta.SHA256, h: sha256.New()}
}

type checkedReader struct {
	key  string
	r    io.Reader
	want int64  // declared size
	sum  string // declared sha256
	h    hash.Hash
	n    int64 // bytes read from r (and hashed)
	out  int64 // bytes handed to the caller
	last []byte
	err  error // sticky: io.EOF once verified, else the failure
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// All but the last byte go straight through.
	if c.n < c.want-1 {
		if room := c.want - 1 - c.n; int64(len(p)) > room {
			p = p[:room]
		}
		n, err := c.r.Read(p)
		c.h.Write(p[:n])
		c.n += int64(n)
		c.out += int64(n)
		if err == io.EOF {
			c.err = fmt.Errorf("%s: %w: ended after %d bytes, want %d", c.key, ErrBadBody, c.n, c.want)
			return n, c.err
		}
		if err != nil {
			c.err = fmt.Errorf("%s: read body: %w", c.key, err)
			return n, c.err
		}
		return n, nil
	}
	// The last byte (none for an empty object): read it and make sure r
	// ends there before anything of it leaves.
	if c.last == nil {
		if err := c.finish(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if c.out == c.want {
		c.err = io.EOF
		return 0, io.EOF
	}
	n := copy(p, c.last[c.out-(c.want-int64(len(c.last))):])
	c.out += int64(n)
	return n, nil
}

// finish reads what is left of r, which must be the last byte and then
// the end, and checks the hash.
func (c *checkedReader) finish() error {
	var buf bytes.Buffer
	// One byte more than is left, so that a longer body shows.
	n, err := io.Copy(&buf, io.LimitReader(c.r, c.want-c.n+1))
	if err != nil {
		return fmt.Errorf("%s: read body: %w", c.key, err)
	}
	c.h.Write(buf.Bytes())
	c.n += n
	if c.n < c.want {
		return fmt.Errorf("%s: %w: ended after %d bytes, want %d", c.key, ErrBadBody, c.n, c.want)
	}
	if c.n > c.want {
		return fmt.Errorf("%s: %w: longer than %d bytes", c.key, ErrBadBody, c.want)
	}
	if got := hex.EncodeToString(c.h.Sum(nil)); got != c.sum {
		return fmt.Errorf("%s: %w: sha256 %s, want %s", c.key, ErrBadBody, got, c.sum)
	}
	c.last = buf.Bytes()
	if c.last == nil {
		c.last = []byte{}
	}
	return nil
}
