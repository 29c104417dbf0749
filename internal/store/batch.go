package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	stdsync "sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Batch commits files into the tree without making each one durable on
// its own: a commit gives the temp file its name in the tree (visible to
// readers and indexed in memory at once), and Flush later makes every file
// of the batch durable with one sync of the file system, and only then
// records their metadata in badger, in one write batch.
//
// This is for writers that need a group of files durable together before
// some later step, not each file at once: the mirror sync, which must
// have every package on disk before it publishes the db naming them. One
// fsync of the file, one of its folder and one badger transaction per
// file cost it several times what the download itself does.
//
// Why it is safe:
//   - A power loss before Flush may leave a batch's file empty or holding
//     garbage, but never with a record: records reach badger only after
//     the sync that made the bytes durable, and flushAccess skips a file
//     whose record is pending (entry.lazy). At restart, load indexes such
//     a file from stat alone, with no sha256, so whoever trusts a sha256
//     (the sync's check against its db) hashes it first, and fetches it
//     again if it differs.
//   - kill -9 keeps the page cache: the committed files are whole, and a
//     record that did not reach badger costs one hash of the file at the
//     next sync, never a download.
//   - The caller publishes nothing that names the files (a db) before
//     Flush has returned nil.
//
// All methods are safe for concurrent use.
type Batch struct {
	s       *Store
	flushMu stdsync.Mutex // one Flush at a time, so that concurrent callers share a sync

	mu      stdsync.Mutex       // guards the fields below; never held across I/O
	files   []lazyFile          // committed, not yet durable nor recorded
	keys    []keyValue          // Put, not yet written
	bytes   int64               // bytes of files
	folders map[string]*os.File // tree folder -> open handle (see Commit)
	unnamed map[*os.File]bool   // files from CreateTemp without a name, until committed
	closed  bool

	noUnnamed atomic.Bool // the file system makes no unnamed files
}

type lazyFile struct {
	rel string
	e   *entry
	m   *Meta // what e.meta was set to; the record is written only if it still is
}

type keyValue struct {
	key string
	val []byte
}

// NewBatch returns an empty Batch over s.
func (s *Store) NewBatch() *Batch {
	return &Batch{s: s, folders: map[string]*os.File{}, unnamed: map[*os.File]bool{}}
}

// CreateTemp creates the temp file of a write to rel that Commit will
// publish: an unnamed file (O_TMPFILE) in rel's folder where the file
// system has them, else a file in tmp/ as Store.CreateTemp makes. The
// caller removes it with os.Remove(f.Name()) if it does not commit it;
// for an unnamed file that removes nothing, and closing it frees it.
//
// An unnamed file costs one directory entry, made when Commit links it,
// where a temp file costs three (made in tmp/, removed from it by the
// rename, made in the folder); a crash leaves nothing behind.
func (b *Batch) CreateTemp(rel string) (*os.File, error) {
	if err := CleanPath(rel); err != nil {
		return nil, err
	}
	if d, err := b.folder(path.Dir(rel), false); err == nil && !b.noUnnamed.Load() {
		f, err := createUnnamed(d, filepath.Join(b.s.dir, tmpDir, ".unnamed"))
		if err == nil {
			if err := f.Chmod(b.s.mode.file); err != nil {
				f.Close()
				return nil, err
			}
			b.mu.Lock()
			b.unnamed[f] = true
			b.mu.Unlock()
			return f, nil
		}
		b.noUnnamed.Store(true) // the file system has none: do not ask each time
	}
	return b.s.CreateTemp("fill-*")
}

// Commit publishes a temp file made by CreateTemp (the Batch's or the
// Store's) at rel, like Store.Commit, but without fsync: the file is
// durable, and its metadata recorded, once Flush has returned. The caller
// keeps f open and closes it.
//
// The name is made from open handles, of tmp/ and of rel's folder (opened
// once per batch through the tree's os.Root, so never outside the tree),
// with a plain file name on both sides: one syscall, where os.Root.Rename
// opens and closes every folder of both paths.
func (b *Batch) Commit(f *os.File, rel string, m Meta) error {
	if err := CleanPath(rel); err != nil {
		return err
	}
	dir, name := path.Split(rel)
	dir = path.Clean(dir)
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("commit %s: %w", rel, err)
	}
	m.Size = info.Size()
	if m.FetchedAt.IsZero() {
		m.FetchedAt = time.Now()
	}
	if m.LastModified.IsZero() {
		m.LastModified = info.ModTime()
	}
	ts := []unix.Timespec{unix.NsecToTimespec(m.LastModified.UnixNano()), unix.NsecToTimespec(m.LastModified.UnixNano())}
	b.mu.Lock()
	unnamed := b.unnamed[f]
	delete(b.unnamed, f)
	b.mu.Unlock()
	var place func(dfd int) error
	if unnamed {
		if err := setTimes(f, ts); err != nil {
			return fmt.Errorf("commit %s: %w", rel, err)
		}
		place = func(dfd int) error {
			err := linkUnnamed(f, dfd, name)
			if !errors.Is(err, unix.EEXIST) {
				return err
			}
			// A file of the name is there (a link cannot replace it): link
			// under a temp name, then rename over it.
			tmp := fmt.Sprintf(".commit-%d-%s", time.Now().UnixNano(), name)
			if err := linkUnnamed(f, dfd, tmp); err != nil {
				return err
			}
			if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
				unix.Unlinkat(dfd, tmp, 0)
				return err
			}
			return nil
		}
	} else {
		tmpName := filepath.Base(f.Name())
		if err := fdDo(b.s.tmp, func(tmpfd int) error { return unix.UtimesNanoAt(tmpfd, tmpName, ts, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			return fmt.Errorf("commit %s: %w", rel, err)
		}
		place = func(dfd int) error {
			return fdDo(b.s.tmp, func(tmpfd int) error { return unix.Renameat(tmpfd, tmpName, dfd, name) })
		}
	}
	for retried := false; ; retried = true {
		d, err := b.folder(dir, retried)
		if err == nil {
			err = fdDo(d, place)
		}
		// ENOENT: the folder was removed since it was opened (by hand, or
		// emptied by pruning): make it again, once.
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) || retried {
			return fmt.Errorf("commit %s: %w", rel, err)
		}
	}
	mp := &m
	e := b.s.putEntry(rel, mp, true)
	b.mu.Lock()
	b.files = append(b.files, lazyFile{rel: rel, e: e, m: mp})
	b.bytes += m.Size
	b.mu.Unlock()
	return nil
}

// folder returns an open handle of the tree folder dir, made if missing;
// fresh opens it again.
func (b *Batch) folder(dir string, fresh bool) (*os.File, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("batch closed")
	}
	d := b.folders[dir]
	b.mu.Unlock()
	if d != nil && !fresh {
		return d, nil
	}
	if dir == "" {
		dir = "."
	}
	if err := b.s.mkdirs(dir); err != nil {
		return nil, err
	}
	d, err := b.s.tree.Open(dir)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.folders[dir]; old != nil && !fresh {
		d.Close()
		return old, nil
	}
	// A replaced handle is not closed: a concurrent Commit may be using
	// it; the os.File's cleanup closes it once unreachable.
	b.folders[dir] = d
	return d, nil
}

// fdDo runs fn with f's descriptor, which stays valid until fn returns
// even if f is closed meanwhile.
func fdDo(f *os.File, fn func(fd int) error) error {
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Close flushes the batch and releases its folder handles; it commits
// nothing more after.
func (b *Batch) Close() error {
	err := b.Flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, d := range b.folders {
		d.Close()
	}
	b.folders, b.unnamed = nil, nil
	return err
}

// WriteFile writes data to rel atomically (temp, rename), durable once
// Flush has returned.
func (b *Batch) WriteFile(rel string, data []byte, m Meta) error {
	f, err := b.CreateTemp(rel)
	if err != nil {
		return err
	}
	return writeCommit(f, rel, data, func() error { return b.Commit(f, rel, m) })
}

// Put stores val under key at the next Flush, with the files' records.
func (b *Batch) Put(key string, val []byte) {
	b.mu.Lock()
	b.keys = append(b.keys, keyValue{key, val})
	b.mu.Unlock()
}

// Pending returns how many files, and how many bytes of them, wait for
// Flush.
func (b *Batch) Pending() (files int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.files), b.bytes
}

// Flush makes the files committed so far durable, then records their
// metadata and the Put keys in badger. Commits may go on meanwhile: they
// belong to the next Flush.
//
// If the file system cannot sync, the files stay in the tree but lose
// their sha256 in the index, so that a later check hashes them instead of
// trusting bytes that may not have reached the disk.
func (b *Batch) Flush() error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	files, keys := b.files, b.keys
	b.files, b.keys, b.bytes = nil, nil, 0
	b.mu.Unlock()
	if len(files) > 0 {
		if err := b.s.syncFS(); err != nil {
			for _, f := range files {
				if f.e.meta.Load() == f.m {
					m := *f.m
					m.SHA256 = ""
					b.s.putEntry(f.rel, &m, false)
				}
			}
			return fmt.Errorf("sync %d files to disk: %w", len(files), err)
		}
	}
	wb := b.s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, f := range files {
		// A file removed or committed again since has no record to
		// write, or its own.
		if v, ok := b.s.index.Load(f.rel); !ok || v.(*entry) != f.e || f.e.meta.Load() != f.m {
			continue
		}
		val, err := json.Marshal(f.m)
		if err != nil {
			return err
		}
		if err := wb.Set([]byte(filePrefix+f.rel), val); err != nil {
			return fmt.Errorf("record %s: %w", f.rel, err)
		}
	}
	for _, kv := range keys {
		if err := wb.Set([]byte(kv.key), kv.val); err != nil {
			return fmt.Errorf("put %s: %w", kv.key, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("record %d files: %w", len(files), err)
	}
	for _, f := range files {
		f.e.lazy.CompareAndSwap(f.m, nil)
	}
	return nil
}

// Indexed returns what the index holds for rel, without looking on disk:
// for a caller that listed rel's folder just before and asks only
// whether a file was committed since.
func (s *Store) Indexed(rel string) (Meta, bool) {
	v, ok := s.index.Load(rel)
	if !ok {
		return Meta{}, false
	}
	e := v.(*entry)
	m := *e.meta.Load()
	m.LastAccess = time.Unix(0, e.lastAccess.Load())
	return m, true
}

// syncFS makes everything written to the data directory's file system
// durable: the files, their renames and the folders made.
func (s *Store) syncFS() error {
	d, err := os.Open(filepath.Join(s.dir, treeDir))
	if err != nil {
		return err
	}
	defer d.Close()
	return syncfs(d)
}
