package fsobj

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// Folders of the directory Open is given; the same as store.Store's.
const (
	treeDir = "tree"
	tmpDir  = "tmp"
)

// metaXattr holds an object's metadata but its size (the file's).
const metaXattr = "user.mirrord.meta"

// xattrMeta is metaXattr's JSON.
type xattrMeta struct {
	SHA256       string    `json:"sha256"`
	ETag         string    `json:"etag,omitempty"`
	LastModified time.Time `json:"last_modified,omitzero"`
	// Version is a random token written by each Put (store.ObjectMeta's
	// Version), so that no two Puts share one.
	Version string `json:"version,omitempty"`
}

// Options configures Open.
type Options struct {
	// PrivateTree makes files 0600 and folders 0700 (storage.tree_mode
	// private); by default they are 0644 and 0755, so that a web server
	// running as another user can serve the tree.
	PrivateTree bool
}

// Tree is the filesystem backend. All methods are safe for concurrent use.
//
// PutIfMatch's "exactly one wins" holds among the goroutines of one
// process: a version is checked and replaced under a lock of the key
// (keyLocks), which every commit into the tree (Put, PutIfAbsent,
// PutIfMatch, Delete) takes. Two processes that open the same directory
// do not share it; nothing does that (store.Open takes the directory for
// one process).
type Tree struct {
	root     *os.Root // {dir}: every path goes through it, so no key leaves it
	fileMode os.FileMode
	dirMode  os.FileMode
	// keyLocks serialise the commits of a key: a key takes
	// keyLocks[fnv32a(key) % len], so two keys may share one, which costs
	// only a wait as long as a rename. Held across the check and the
	// rename of a PutIfMatch, and the rename, link or unlink of the
	// others; never across a body's copy or an fsync.
	keyLocks [64]sync.Mutex
}

var _ store.Objects = (*Tree)(nil)

// Open opens the tree under dir, making dir/tree and dir/tmp if missing.
// It does not clean dir/tmp: its owner does (store.Open wipes it at start).
func Open(dir string, opts Options) (*Tree, error) {
	t := &Tree{fileMode: 0o644, dirMode: 0o755}
	if opts.PrivateTree {
		t.fileMode, t.dirMode = 0o600, 0o700
	}
	for _, d := range []string{dir, path.Join(dir, treeDir)} {
		if err := os.MkdirAll(d, t.dirMode); err != nil {
			return nil, fmt.Errorf("open tree %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(path.Join(dir, tmpDir), 0o700); err != nil {
		return nil, fmt.Errorf("open tree %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open tree %s: %w", dir, err)
	}
	t.root = root
	return t, nil
}

// Close releases the tree's directory.
func (t *Tree) Close() error { return t.root.Close() }

// Get opens the object at key.
func (t *Tree) Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error) {
	f, meta, err := t.open(ctx, key)
	if err != nil {
		return nil, store.ObjectMeta{}, err
	}
	return f, meta, nil
}

// GetRange opens length bytes of the object at key from offset.
func (t *Tree) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	f, meta, err := t.open(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset >= meta.Size || length <= 0 {
		f.Close()
		return nil, fmt.Errorf("get %s bytes %d+%d of %d: %w", key, offset, length, meta.Size, store.ErrInvalidRange)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, min(length, meta.Size-offset)), f}, nil
}

// Stat is the metadata of the object at key.
func (t *Tree) Stat(ctx context.Context, key string) (store.ObjectMeta, error) {
	f, meta, err := t.open(ctx, key)
	if err != nil {
		return store.ObjectMeta{}, err
	}
	f.Close()
	return meta, nil
}

// open opens the file at key and reads its metadata from it, so that both
// are of the same file whatever renames happen meanwhile.
func (t *Tree) open(ctx context.Context, key string) (*os.File, store.ObjectMeta, error) {
	if err := store.CleanPath(key); err != nil {
		return nil, store.ObjectMeta{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, store.ObjectMeta{}, err
	}
	f, err := t.root.Open(treeDir + "/" + key)
	if err != nil {
		return nil, store.ObjectMeta{}, notFound(key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, store.ObjectMeta{}, fmt.Errorf("get %s: %w", key, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, store.ObjectMeta{}, fmt.Errorf("get %s: a folder: %w", key, store.ErrNotFound)
	}
	raw, err := getXattr(f, metaXattr)
	if errors.Is(err, syscall.ENODATA) {
		// A file put in the tree by other means (an older mirrord, rsync
		// without -X): its size and mtime are all there is.
		return f, store.ObjectMeta{Size: info.Size(), LastModified: info.ModTime(), Version: statVersion(info)}, nil
	}
	if err != nil {
		f.Close()
		return nil, store.ObjectMeta{}, fmt.Errorf("get %s: metadata: %w", key, err)
	}
	var m xattrMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		f.Close()
		return nil, store.ObjectMeta{}, fmt.Errorf("get %s: metadata: %w", key, err)
	}
	version := m.Version
	if version == "" {
		version = statVersion(info)
	}
	return f, store.ObjectMeta{Size: info.Size(), SHA256: store.ReadSHA256(m.SHA256), ETag: m.ETag, LastModified: m.LastModified, Version: version}, nil
}

// statVersion is the version of a file that has no token of ours (put in
// the tree by other means, or by a mirrord before versions): its size and
// mtime, which a token never looks like.
func statVersion(info fs.FileInfo) string {
	return fmt.Sprintf("stat-%d-%d", info.Size(), info.ModTime().UnixNano())
}

// keyLock is the lock of key's commits.
func (t *Tree) keyLock(key string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &t.keyLocks[h.Sum32()%uint32(len(t.keyLocks))]
}

// notFound maps a missing file, or a file where a folder of key should
// be, to store.ErrNotFound.
func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return fmt.Errorf("get %s: %w", key, err)
}

// How put commits a file.
type commit int

const (
	replace  commit = iota // rename over whatever is there
	ifAbsent               // link, which refuses an existing name
	ifMatch                // rename, if the key's version is the one given
)

// Put stores the object at key, replacing any.
func (t *Tree) Put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	_, err := t.put(ctx, key, r, meta, replace, "")
	return err
}

// PutIfAbsent stores the object at key unless the key holds one
// (store.ErrExists). link(2) refuses an existing name, so exactly one of
// concurrent callers wins.
func (t *Tree) PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error {
	_, err := t.put(ctx, key, r, meta, ifAbsent, "")
	return err
}

// PutIfMatch stores the object at key if the key's version is version
// (store.ErrVersionMismatch otherwise). The version is read and the file
// renamed over it under the key's lock, so exactly one of concurrent
// callers in this process wins (see Tree).
func (t *Tree) PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error) {
	return t.put(ctx, key, r, meta, ifMatch, version)
}

// Copy stores the object at src under dst too: a checked copy of its
// file, committed as Put commits.
func (t *Tree) Copy(ctx context.Context, src, dst string, meta store.ObjectMeta) error {
	f, cur, err := t.open(ctx, src)
	if err != nil {
		return err
	}
	defer f.Close()
	if cur.Size != meta.Size || cur.SHA256 != meta.SHA256 {
		return fmt.Errorf("copy %s to %s: it is %d bytes, sha256 %q, not the %d, %q given", src, dst, cur.Size, cur.SHA256, meta.Size, meta.SHA256)
	}
	_, err = t.put(ctx, dst, f, meta, replace, "")
	return err
}

// put writes a temp file, checks it, fsyncs it, and renames (or, if
// absent, links) it into the tree, then fsyncs the folder. It returns
// the version it stored.
func (t *Tree) put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, how commit, version string) (_ string, err error) {
	if err := store.CleanPath(key); err != nil {
		return "", err
	}
	if err := store.CheckMeta(key, meta); err != nil {
		return "", err
	}
	tmp := tmpDir + "/" + tempName()
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		f.Close()
		// After a rename there is nothing left to remove; after a link
		// the temp name goes either way.
		if err != nil || how == ifAbsent {
			t.root.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, store.CheckedReader(key, contextReader{ctx, r}, meta)); err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	stored := newVersion()
	raw, err := json.Marshal(xattrMeta{SHA256: meta.SHA256, ETag: meta.ETag, LastModified: meta.LastModified, Version: stored})
	if err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if err := setXattr(f, metaXattr, raw); err != nil {
		return "", fmt.Errorf("put %s: metadata: %w", key, err)
	}
	if err := f.Chmod(t.fileMode); err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if !meta.LastModified.IsZero() {
		// The file's mtime is upstream's Last-Modified, as in the tree today.
		if err := t.root.Chtimes(tmp, meta.LastModified, meta.LastModified); err != nil {
			return "", fmt.Errorf("put %s: %w", key, err)
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("put %s: sync: %w", key, err)
	}
	dir := path.Dir(key)
	if err := t.mkdirs(dir); err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if err := t.commit(ctx, key, tmp, how, version); err != nil {
		return "", err
	}
	if err := t.syncDir(treeDir + "/" + dir); err != nil {
		return "", fmt.Errorf("put %s: sync folder: %w", key, err)
	}
	return stored, nil
}

// commit puts the temp file tmp at key, under the key's lock.
func (t *Tree) commit(ctx context.Context, key, tmp string, how commit, version string) error {
	mu := t.keyLock(key)
	mu.Lock()
	defer mu.Unlock()
	var err error
	switch how {
	case ifAbsent:
		err = t.root.Link(tmp, treeDir+"/"+key)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put %s: %w", key, store.ErrExists)
		}
	case ifMatch:
		f, meta, oerr := t.open(ctx, key)
		if errors.Is(oerr, store.ErrNotFound) {
			return fmt.Errorf("put %s if version %q: none there: %w", key, version, store.ErrVersionMismatch)
		}
		if oerr != nil {
			return fmt.Errorf("put %s if version %q: %w", key, version, oerr)
		}
		f.Close()
		if version == "" || meta.Version != version {
			return fmt.Errorf("put %s if version %q: version %q there: %w", key, version, meta.Version, store.ErrVersionMismatch)
		}
		err = t.root.Rename(tmp, treeDir+"/"+key)
	default:
		err = t.root.Rename(tmp, treeDir+"/"+key)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// mkdirs makes the tree folder dir and its parents with the tree's folder
// mode, whatever the umask, each new one fsynced into its parent.
func (t *Tree) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	if err := t.mkdirs(path.Dir(dir)); err != nil {
		return err
	}
	p := treeDir + "/" + dir
	err := t.root.Mkdir(p, t.dirMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := t.root.Chmod(p, t.dirMode); err != nil {
		return err
	}
	return t.syncDir(path.Dir(p))
}

func (t *Tree) syncDir(dir string) error {
	d, err := t.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// List is every key under prefix, in byte order: the regular files of the
// tree (a folder is not an object).
func (t *Tree) List(ctx context.Context, prefix string) ([]string, error) {
	// Any key that starts with prefix must be clean, so prefix+"x" must
	// be: this refuses "..", absolute and empty-segment prefixes.
	if err := store.CleanPath(prefix + "x"); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	start := treeDir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start += "/" + prefix[:i]
	}
	var keys []string
	err := fs.WalkDir(t.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		key := strings.TrimPrefix(p, treeDir+"/")
		if d.IsDir() {
			// Skip folders that cannot hold a key under prefix.
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object at key, if there is one, and fsyncs its folder.
func (t *Tree) Delete(ctx context.Context, key string) error {
	if err := store.CleanPath(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := treeDir + "/" + key
	info, err := t.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if info.IsDir() {
		return fmt.Errorf("delete %s: a folder, not an object", key)
	}
	mu := t.keyLock(key)
	mu.Lock()
	err = t.root.Remove(p)
	mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := t.syncDir(path.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: sync folder: %w", key, err)
	}
	return nil
}

// newVersion is a fresh version token.
func newVersion() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tempName is a fresh name for a temp file in tmp/.
func tempName() string {
	var b [12]byte
	rand.Read(b[:])
	return "obj-" + hex.EncodeToString(b[:])
}

// contextReader ends a Put whose context ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
