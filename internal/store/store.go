package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned for a path that is not in the tree or a key that
// is not in the key-value store.
var ErrNotFound = errors.New("not found")

// Layout of the data directory.
const (
	treeDir = "tree" // the served files: a valid mirror layout
	metaDir = "meta" // badger
	tmpDir  = "tmp"  // downloads and uploads in progress; wiped at start
)

// Meta is what the store knows of one file in the tree.
type Meta struct {
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256,omitempty"`
	ETag         string    `json:"etag,omitempty"`
	LastModified time.Time `json:"last_modified,omitzero"` // upstream's, also the file's mtime
	FetchedAt    time.Time `json:"fetched_at,omitzero"`    // last fetch or revalidation
	LastAccess   time.Time `json:"last_access,omitzero"`
	// Shared: the file is in the cluster's shared storage too, so this
	// copy is a cache (see internal/fetch.Shared).
	Shared bool `json:"shared,omitempty"`
}

// Options configures Open.
type Options struct {
	// MemorySize bounds the bytes of small files held in memory for the
	// hit path (see Hit); 0 holds none.
	MemorySize int64
	// MemoryFileMax is the largest file held in memory; default 16 KiB:
	// above it, sendfile(2) from the page cache costs less than copying
	// the bytes out of memory, on either serving path.
	MemoryFileMax int64
	// FlushInterval is how often batched access times reach badger;
	// default 30s.
	FlushInterval time.Duration
	// PrivateTree makes the tree readable by mirrord's user only (files
	// 0600, folders 0700; storage.tree_mode private). By default files
	// are 0644 and folders 0755, so that nginx or an rsync daemon running
	// as another user can serve the tree.
	PrivateTree bool
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// entry is the in-memory record of one indexed file. meta is replaced
// whole (copy on write) so that readers never see a torn Meta; lastAccess
// is separate so that a cache hit costs one atomic store.
type entry struct {
	meta       atomic.Pointer[Meta]
	content    atomic.Pointer[content]    // the file's bytes, if held in memory (see Hit)
	open       atomic.Pointer[SharedFile] // the file held open, if it is (see Hit)
	lastAccess atomic.Int64               // unix nanoseconds, written by Touch
	flushed    atomic.Int64               // lastAccess value last written to badger
	// lazy is meta while it was committed by a Batch not yet flushed: its
	// file's bytes may not be on disk, so nothing may write it to badger
	// (flushAccess skips it) until the Batch has synced them.
	lazy atomic.Pointer[Meta]
}

// Store is the data directory. All methods are safe for concurrent use.
type Store struct {
	dir  string
	root *os.Root // the data directory: every path goes through it, so nothing escapes
	tree *os.Root // root's tree/ folder
	tmp  *os.File // root's tmp/ folder, for Batch's renames (see Batch.Commit)
	db   *badger.DB
	opts Options
	log  *slog.Logger

	index   stdsync.Map // tree path -> *entry
	dirs    stdsync.Map // tree folder -> *os.Root, opened on first use (see Open)
	size    atomic.Int64
	files   atomic.Int64
	memUsed atomic.Int64 // bytes held by entries' content
	held    atomic.Int64 // files held open by entries (see Hit)
	mode    treeModes
	dirsOK  stdsync.Map // tree folder -> true once it exists with mode.dir (mkdirs)
}

// Open opens or creates the data directory, wipes leftovers of a crash
// from tmp/ (staging/ is kept: see ListStaged), and reconciles the index
// with the tree.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MemoryFileMax <= 0 {
		opts.MemoryFileMax = 16 << 10
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	// A temp file is only ever an unfinished write: nothing in tmp/ survives a restart.
	if err := os.RemoveAll(filepath.Join(dir, tmpDir)); err != nil {
		return nil, fmt.Errorf("open store: clean %s: %w", tmpDir, err)
	}
	// The data dir and the tree can be traversed by other users (unless
	// private); meta/, tmp/ and staging/ never. The data dir may be the operator's:
	// it only gains the bits that reaching the tree needs.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if info, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	} else if want := info.Mode().Perm() | 0o011; !opts.PrivateTree && info.Mode().Perm() != want {
		if err := os.Chmod(dir, want); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{treeDir, modes(opts.PrivateTree).dir}, {metaDir, 0o700}, {tmpDir, 0o700}, {stagingDir, 0o700}} {
		p := filepath.Join(dir, d.name)
		if err := os.MkdirAll(p, d.mode); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	tree, err := root.OpenRoot(treeDir)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := badger.Open(badgerOptions(filepath.Join(dir, metaDir), opts.Logger))
	if err != nil {
		tree.Close()
		root.Close()
		return nil, fmt.Errorf("open metadata in %s: %w", filepath.Join(dir, metaDir), err)
	}
	tmp, err := root.Open(tmpDir)
	if err != nil {
		db.Close()
		tree.Close()
		root.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{dir: dir, root: root, tree: tree, tmp: tmp, db: db, opts: opts, log: opts.Logger, mode: modes(opts.PrivateTree)}
	registerMetrics(opts.Registerer, s)
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func badgerOptions(dir string, log *slog.Logger) badger.Options {
	// Metadata is small (a few hundred bytes a file): small tables and
	// caches keep badger's memory far below its defaults.
	return badger.DefaultOptions(dir).
		WithLogger(newBadgerLogger(log)).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBaseTableSize(2 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
}

// load fills the index from badger and the tree: metadata without a file is
// dropped, a file without metadata (placed by hand) is indexed from stat.
func (s *Store) load() error {
	known := map[string]Meta{}
	err := s.scan(filePrefix, func(key string, val []byte) error {
		var m Meta
		if err := json.Unmarshal(val, &m); err != nil {
			s.log.Warn("dropping unreadable metadata", "file", key, "err", err)
			return nil
		}
		known[key] = m
		return nil
	})
	if err != nil {
		return fmt.Errorf("load metadata: %w", err)
	}
	var fixed int
	err = fs.WalkDir(s.tree.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			info, err := d.Info()
			if err == nil && info.Mode().Perm() != s.mode.dir {
				fixed++
				err = s.tree.Chmod(p, s.mode.dir)
			}
			if err == nil {
				s.dirsOK.Store(p, true)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != s.mode.file {
			// A tree from before modes were kept, or placed by hand.
			fixed++
			if err := s.tree.Chmod(p, s.mode.file); err != nil {
				return err
			}
		}
		m, ok := known[p]
		if !ok || m.Size != info.Size() {
			m = Meta{Size: info.Size(), LastModified: info.ModTime(), FetchedAt: info.ModTime()}
		}
		delete(known, p)
		s.put(p, m)
		return nil
	})
	if err != nil {
		return fmt.Errorf("index tree: %w", err)
	}
	if fixed > 0 {
		s.log.Info("set the modes of the tree's files and folders", "files_and_folders", fixed, "file_mode", fmt.Sprintf("%04o", s.mode.file), "folder_mode", fmt.Sprintf("%04o", s.mode.dir))
	}
	for p := range known {
		if err := s.Delete(filePrefix + p); err != nil {
			return err
		}
	}
	return nil
}

// put records m in the index (not in badger) and keeps the totals right.
func (s *Store) put(rel string, m Meta) { s.putEntry(rel, &m, false) }

// putEntry records mp in the index; lazy says that mp is not in badger
// yet, and must not get there before its Batch is flushed.
func (s *Store) putEntry(rel string, mp *Meta, lazy bool) *entry {
	e := &entry{}
	if v, loaded := s.index.LoadOrStore(rel, e); loaded {
		e = v.(*entry)
	} else {
		s.files.Add(1)
	}
	m := *mp
	if lazy {
		e.lazy.Store(mp) // before meta: flushAccess must never see mp without it
	}
	if old := e.meta.Swap(mp); old != nil {
		s.size.Add(-old.Size)
	}
	s.size.Add(m.Size)
	s.dropContent(e)
	at := m.LastAccess.UnixNano()
	if m.LastAccess.IsZero() {
		at = m.FetchedAt.UnixNano()
	}
	e.lastAccess.Store(at)
	e.flushed.Store(at)
	if !lazy {
		e.lazy.Store(nil)
	}
	return e
}

// Close flushes batched access times and closes the metadata database.
func (s *Store) Close() error {
	ferr := s.flushAccess()
	err := s.db.Close()
	s.index.Range(func(_, v any) bool {
		s.dropOpen(v.(*entry)) // a response still sending finishes first
		return true
	})
	s.dirs.Range(func(k, v any) bool {
		v.(*os.Root).Close()
		return true
	})
	s.tmp.Close()
	s.tree.Close()
	s.root.Close()
	return errors.Join(ferr, err)
}

// CleanPath checks that rel is a clean relative tree path: no leading '/',
// no '.', '..' or empty segment, no NUL or backslash. Callers resolve URLs
// through it; the os.Root below it is the second fence.
func CleanPath(rel string) error {
	if rel == "" || len(rel) > 1024 || strings.HasPrefix(rel, "/") || strings.ContainsAny(rel, "\x00\\") {
		return fmt.Errorf("invalid tree path %q", rel)
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid tree path %q", rel)
		}
	}
	return nil
}

// CreateTemp creates a file in tmp/ for a write that Commit will publish.
// The caller removes it (os.Remove) if it does not commit it.
func (s *Store) CreateTemp(pattern string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), strings.ReplaceAll(pattern, "/", "_"))
	if err != nil {
		return nil, err
	}
	// The mode it will have in the tree (tmp/ itself is private).
	if err := f.Chmod(s.mode.file); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// treeModes are the permissions of the tree's files and folders.
type treeModes struct{ file, dir os.FileMode }

func modes(private bool) treeModes {
	if private {
		return treeModes{file: 0o600, dir: 0o700}
	}
	return treeModes{file: 0o644, dir: 0o755}
}

// mkdirs makes the tree folder dir and its parents with the tree's folder
// mode, whatever the process's umask. A folder once checked is
// remembered and not checked again (one made again after a removal by
// hand gets the umask's mode until the next start fixes it).
func (s *Store) mkdirs(dir string) error {
	if dir == "" {
		dir = "."
	}
	if err := s.tree.MkdirAll(dir, s.mode.dir); err != nil {
		return err
	}
	for p := dir; p != "." && p != "/"; p = path.Dir(p) {
		if _, ok := s.dirsOK.Load(p); ok {
			break
		}
		info, err := s.tree.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode().Perm() != s.mode.dir {
			if err := s.tree.Chmod(p, s.mode.dir); err != nil {
				return err
			}
		}
		s.dirsOK.Store(p, true)
	}
	return nil
}

// Commit publishes a temp file made by CreateTemp at rel: fsync the file,
// set its mtime to m.LastModified, rename it into the tree, fsync the
// folder, then record m. The caller keeps f open (readers may still use it)
// and closes it. m.Size is taken from the file.
func (s *Store) Commit(f *os.File, rel string, m Meta) error {
	if err := CleanPath(rel); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("commit %s: sync: %w", rel, err)
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("commit %s: %w", rel, err)
	}
	m.Size = info.Size()
	if m.FetchedAt.IsZero() {
		m.FetchedAt = time.Now()
	}
	tmpRel := tmpDir + "/" + filepath.Base(f.Name())
	if !m.LastModified.IsZero() {
		if err := s.root.Chtimes(tmpRel, m.LastModified, m.LastModified); err != nil {
			return fmt.Errorf("commit %s: %w", rel, err)
		}
	} else {
		m.LastModified = info.ModTime()
	}
	if err := s.mkdirs(path.Dir(rel)); err != nil {
		return fmt.Errorf("commit %s: %w", rel, err)
	}
	if err := s.root.Rename(tmpRel, treeDir+"/"+rel); err != nil {
		return fmt.Errorf("commit %s: %w", rel, err)
	}
	if err := syncDir(s.tree, path.Dir(rel)); err != nil {
		return fmt.Errorf("commit %s: %w", rel, err)
	}
	return s.SetMeta(rel, m)
}

// WriteFile writes data to rel atomically (temp, fsync, rename).
func (s *Store) WriteFile(rel string, data []byte, m Meta) error {
	f, err := s.CreateTemp("write-*")
	if err != nil {
		return err
	}
	return writeCommit(f, rel, data, func() error { return s.Commit(f, rel, m) })
}

// writeCommit writes data to the temp file f and commits it; f is closed,
// and removed unless committed.
func writeCommit(f *os.File, rel string, data []byte, commit func() error) error {
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := commit(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// Symlink points rel at target (relative to rel's folder), replacing what
// was there atomically, as repo-add's {repo}.db -> {repo}.db.tar.gz.
func (s *Store) Symlink(target, rel string) error {
	if err := CleanPath(rel); err != nil {
		return err
	}
	if err := CleanPath(path.Join(path.Dir(rel), target)); err != nil || strings.Contains(target, "/") {
		return fmt.Errorf("symlink %s: target %q must be a file in the same folder", rel, target)
	}
	tmp := fmt.Sprintf("%s/link-%d", tmpDir, time.Now().UnixNano())
	if err := s.root.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	if err := s.mkdirs(path.Dir(rel)); err != nil {
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	if err := s.root.Rename(tmp, treeDir+"/"+rel); err != nil {
		s.root.Remove(tmp)
		return fmt.Errorf("symlink %s: %w", rel, err)
	}
	if err := s.forget(rel); err != nil { // a regular file was there before
		return err
	}
	return syncDir(s.tree, path.Dir(rel))
}

// syncDir fsyncs the folder rel of root, so that a rename into it lasts.
func syncDir(root *os.Root, rel string) error {
	d, err := root.Open(rel)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SetMeta records m for rel, in the index and in badger.
func (s *Store) SetMeta(rel string, m Meta) error {
	val, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.Put(filePrefix+rel, val); err != nil {
		return fmt.Errorf("record %s: %w", rel, err)
	}
	s.put(rel, m)
	return nil
}

// MarkShared records that rel is in the cluster's shared storage too
// (Meta.Shared). It does nothing, and says false, for a file that is not
// indexed, whose record changed meanwhile, or whose record waits for its
// Batch (its bytes may not be durable yet, so no record of it may reach
// badger).
func (s *Store) MarkShared(rel string) (bool, error) {
	v, ok := s.index.Load(rel)
	if !ok {
		return false, nil
	}
	e := v.(*entry)
	mp := e.meta.Load()
	if mp.Shared {
		return true, nil
	}
	if e.lazy.Load() != nil {
		return false, nil
	}
	m := *mp
	m.Shared = true
	m.LastAccess = time.Unix(0, e.lastAccess.Load())
	val, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	if !e.meta.CompareAndSwap(mp, &m) {
		return false, nil // a newer record: its writer decides
	}
	if err := s.Put(filePrefix+rel, val); err != nil {
		return false, fmt.Errorf("record %s: %w", rel, err)
	}
	if cur, ok := s.index.Load(rel); !ok || cur != v {
		// Removed (evicted) meanwhile: no record of a file that is gone.
		return false, s.Delete(filePrefix + rel)
	}
	return true, nil
}

// Stat returns what the index knows of rel. A file placed in the tree by
// hand after start is found on disk and indexed. A symlink (a hosted
// repo's {repo}.db) is described by its target but never indexed: its
// target is, and indexing both would let the link's entry go stale.
func (s *Store) Stat(rel string) (Meta, error) {
	if v, ok := s.index.Load(rel); ok {
		e := v.(*entry)
		m := *e.meta.Load()
		m.LastAccess = time.Unix(0, e.lastAccess.Load())
		return m, nil
	}
	// Not committed through the store: placed by hand, or a hosted
	// repo's {repo}.db link. A miss costs one fstatat in the folder.
	var m Meta
	regular := false
	err := s.inFolder(rel, func(root *os.Root, name string) error {
		linfo, err := root.Lstat(name)
		if err != nil {
			return ErrNotFound
		}
		info := linfo
		if !linfo.Mode().IsRegular() {
			if info, err = root.Stat(name); err != nil {
				return ErrNotFound
			}
		}
		if !info.Mode().IsRegular() {
			return ErrNotFound
		}
		m = Meta{Size: info.Size(), LastModified: info.ModTime(), FetchedAt: info.ModTime()}
		regular = linfo.Mode().IsRegular()
		return nil
	})
	if err != nil {
		return Meta{}, ErrNotFound
	}
	if regular {
		s.put(rel, m)
	}
	return m, nil
}

// Open opens rel for reading through an os.Root, so that neither '..'
// nor a symlink can lead outside the tree. It does not touch.
//
// Each folder's os.Root is opened once and kept: opening "a/b/c/d/f"
// through the tree's root costs an openat and a close per folder, through
// the folder's own root a single openat, which matters on the hit path.
func (s *Store) Open(rel string) (*os.File, error) {
	var f *os.File
	err := s.inFolder(rel, func(root *os.Root, name string) (err error) {
		f, err = s.open(root, name)
		return err
	})
	return f, err
}

// inFolder runs fn with the os.Root of rel's folder, kept once opened,
// and rel's base name; fn reports a missing file as ErrNotFound. Through
// the folder's own root a lookup costs one syscall; through the tree's
// root, an openat and a close per folder on the way.
func (s *Store) inFolder(rel string, fn func(root *os.Root, name string) error) error {
	if err := CleanPath(rel); err != nil {
		return ErrNotFound
	}
	dir, name := path.Split(rel)
	if dir == "" {
		return fn(s.tree, name)
	}
	dir = dir[:len(dir)-1]
	if v, ok := s.dirs.Load(dir); ok {
		err := fn(v.(*os.Root), name)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return err
		}
		// The folder may have been removed and made again since its root
		// was opened: then forget it and look once more. The old root is
		// not closed here: other requests may be opening through it right
		// now (closing it gave them "file already closed", a spurious
		// miss); os.Root closes itself once unreachable.
		if !s.staleRoot(dir, v.(*os.Root)) {
			return ErrNotFound
		}
		s.dirs.CompareAndDelete(dir, v)
	}
	root, err := s.tree.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return ErrNotFound
		}
		return err
	}
	if v, loaded := s.dirs.LoadOrStore(dir, root); loaded {
		root.Close()
		root = v.(*os.Root)
	}
	return fn(root, name)
}

// staleRoot reports whether root no longer is the tree's folder dir.
//
// A removed folder has no links left, which one fstat of the held root
// tells: that is all a miss costs (a sync's first look at each of 30,000
// files is one). Where the link count is not known, the folder is looked
// up again through the tree's root and compared.
func (s *Store) staleRoot(dir string, root *os.Root) bool {
	held, err := root.Stat(".")
	if err != nil {
		return true
	}
	if st, ok := held.Sys().(*syscall.Stat_t); ok {
		return st.Nlink == 0
	}
	now, err := s.tree.Stat(dir)
	return err != nil || !os.SameFile(held, now)
}

func (s *Store) open(root *os.Root, name string) (*os.File, error) {
	// O_NONBLOCK spares os.NewFile its attempt to register a regular file
	// with the poller (four fcntl and a failed epoll_ctl per open).
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return f, nil
}

// Readlink returns the tree path that rel, a symlink, points to, when
// that is a file in rel's own folder (a hosted repo's {repo}.db points
// to {repo}.db.tar.gz, as Symlink makes them); ok is false for anything
// else. The link is read each time, never cached: it is replaced whole
// when a rebuild changes it, and a cached answer would go stale.
func (s *Store) Readlink(rel string) (string, bool) {
	if CleanPath(rel) != nil {
		return "", false
	}
	target, err := s.tree.Readlink(rel)
	if err != nil || target == "" || strings.Contains(target, "/") {
		return "", false
	}
	dst := path.Join(path.Dir(rel), target)
	if CleanPath(dst) != nil {
		return "", false
	}
	return dst, true
}

// Lstat reports on rel without following a final symlink.
func (s *Store) Lstat(rel string) (fs.FileInfo, error) {
	if rel == "" {
		return s.tree.Stat(".")
	}
	if err := CleanPath(rel); err != nil {
		return nil, ErrNotFound
	}
	return s.tree.Lstat(rel)
}

// ReadDir lists a folder of the tree ("" is the top).
func (s *Store) ReadDir(rel string) ([]fs.DirEntry, error) {
	if rel == "" {
		rel = "."
	} else if err := CleanPath(rel); err != nil {
		return nil, ErrNotFound
	}
	return fs.ReadDir(s.tree.FS(), rel)
}

// Touch records an access to rel in memory only; the next flush writes it.
// A cache hit therefore costs an atomic store, not a badger write.
func (s *Store) Touch(rel string) {
	if v, ok := s.index.Load(rel); ok {
		v.(*entry).lastAccess.Store(time.Now().UnixNano())
	}
}

// Remove deletes rel from the tree and its metadata.
func (s *Store) Remove(rel string) error {
	if err := CleanPath(rel); err != nil {
		return err
	}
	err := s.tree.Remove(rel)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	return s.forget(rel)
}

// forget drops rel from the index and the metadata.
func (s *Store) forget(rel string) error {
	if v, ok := s.index.LoadAndDelete(rel); ok {
		s.size.Add(-v.(*entry).meta.Load().Size)
		s.files.Add(-1)
		s.dropContent(v.(*entry))
	}
	return s.Delete(filePrefix + rel)
}

// Size is the total size of the indexed files.
func (s *Store) Size() int64 { return s.size.Load() }

// Files is the number of indexed files.
func (s *Store) Files() int64 { return s.files.Load() }

// Each calls fn for every indexed file, in no order, until fn returns
// false (for the cache's eviction, internal/evict).
func (s *Store) Each(fn func(rel string, m Meta) bool) {
	s.index.Range(func(k, v any) bool {
		e := v.(*entry)
		m := *e.meta.Load()
		m.LastAccess = time.Unix(0, e.lastAccess.Load())
		return fn(k.(string), m)
	})
}

// Run flushes access times every FlushInterval until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.flushAccess(); err != nil {
				s.log.Error("flush access times", "err", err)
			}
		}
	}
}

// flushAccess writes the access times that changed since the last flush,
// in one badger transaction batch.
func (s *Store) flushAccess() error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	var err error
	s.index.Range(func(k, v any) bool {
		e := v.(*entry)
		at := e.lastAccess.Load()
		if at == e.flushed.Load() {
			return true
		}
		mp := e.meta.Load()
		if e.lazy.Load() == mp {
			return true // its Batch writes it, once the bytes are durable
		}
		m := *mp
		m.LastAccess = time.Unix(0, at)
		val, merr := json.Marshal(m)
		if merr != nil {
			err = merr
			return false
		}
		if err = wb.Set([]byte(filePrefix+k.(string)), val); err != nil {
			return false
		}
		e.flushed.Store(at)
		return true
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}
