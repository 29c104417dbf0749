package store

import (
	"io"
	"os"
	"sync/atomic"
	"time"
)

// content is a file's bytes held in memory, valid while meta is the
// entry's current Meta (pointer identity): any write of the file replaces
// the Meta and so retires the bytes.
type content struct {
	meta *Meta
	data []byte
}

// Hit returns rel for a response, and marks it used: its bytes from
// memory, read in on first use, when the file is small enough
// (MemoryFileMax) and the memory budget allows (serving a hot small file
// from memory costs no open, stat, sendfile or close, which roughly
// doubles the rate of small hits); else the file held open (see
// SharedFile). One index lookup for all of it: this is the fast path's
// (internal/fastpath). now is the time of the request, the file's last
// use. ok is false when rel is not in the tree.
func (s *Store) Hit(rel string, now time.Time) (data []byte, f *SharedFile, m Meta, ok bool) {
	e := s.lookup(rel)
	if e == nil {
		return nil, nil, Meta{}, false
	}
	mp := e.meta.Load()
	if s.opts.MemorySize > 0 {
		data, ok = s.content(e, mp, rel)
	}
	if !ok {
		if f, ok = s.openShared(e, mp, rel); !ok {
			return nil, nil, Meta{}, false
		}
	}
	e.lastAccess.Store(now.UnixNano())
	return data, f, *mp, true
}

// content returns the bytes of e's file, whose Meta is mp.
func (s *Store) content(e *entry, mp *Meta, rel string) ([]byte, bool) {
	c := e.content.Load()
	if c != nil && c.meta == mp {
		return c.data, true
	}
	if mp.Size > s.opts.MemoryFileMax || s.memUsed.Load()+mp.Size > s.opts.MemorySize {
		return nil, false
	}
	f, err := s.Open(rel)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if !isFile(f, mp) {
		return nil, false
	}
	data := make([]byte, mp.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, false
	}
	if e.meta.Load() != mp {
		return nil, false // rewritten meanwhile: these bytes may be the new file's
	}
	if e.content.CompareAndSwap(c, &content{meta: mp, data: data}) {
		s.memUsed.Add(mp.Size)
		if c != nil {
			s.memUsed.Add(-int64(len(c.data)))
		}
	}
	return data, true
}

// dropContent releases the bytes e holds in memory and the file it holds
// open: e's file was rewritten or removed.
func (s *Store) dropContent(e *entry) {
	if c := e.content.Swap(nil); c != nil {
		s.memUsed.Add(-int64(len(c.data)))
	}
	s.dropOpen(e)
}

// maxHeld bounds the files entries hold open for Hit, well under
// the descriptor limit (Go raises the soft limit to the hard one, and
// the systemd unit sets it); files beyond it are opened per request.
const maxHeld = 4096

// SharedFile is a file of the tree held open for sendfile(2), shared by
// every request for it: each Hit that returns it is paired with a Release, and the
// descriptor closes after the last Release once the file is retired
// (rewritten, removed) or was never cached. No lock: a reference count.
type SharedFile struct {
	f    *os.File
	fd   int
	meta *Meta        // the entry's Meta when opened: identity says it is current
	refs atomic.Int64 // the entry's reference while cached, plus one per user
}

// Fd is the open descriptor, valid until Release.
func (f *SharedFile) Fd() int { return f.fd }

// ReadAt reads at an explicit offset (pread(2)), as every user of the
// shared descriptor must: it has no offset of its own. Valid until
// Release.
func (f *SharedFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Release ends one use of f.
func (f *SharedFile) Release() {
	if f.refs.Add(-1) == 0 {
		f.f.Close()
	}
}

// acquire adds a use unless f is already closed.
func (f *SharedFile) acquire() bool {
	for {
		r := f.refs.Load()
		if r == 0 {
			return false
		}
		if f.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// openShared returns e's file, whose Meta is mp, open.
func (s *Store) openShared(e *entry, mp *Meta, rel string) (*SharedFile, bool) {
	old := e.open.Load()
	if old != nil && old.meta == mp && old.acquire() {
		return old, true
	}
	file, err := s.Open(rel)
	if err != nil {
		return nil, false
	}
	if !isFile(file, mp) {
		file.Close()
		return nil, false
	}
	f := &SharedFile{f: file, meta: mp}
	rc, err := file.SyscallConn() // Control, unlike Fd, leaves the file's mode alone
	if err == nil {
		err = rc.Control(func(fd uintptr) { f.fd = int(fd) })
	}
	if err != nil {
		file.Close()
		return nil, false
	}
	f.refs.Store(1) // the caller's
	if e.meta.Load() != mp || s.held.Load() >= maxHeld {
		return f, true // rewritten meanwhile, or enough held: this use only
	}
	f.refs.Store(2) // and the entry's
	if !e.open.CompareAndSwap(old, f) {
		f.refs.Store(1)
		return f, true
	}
	s.held.Add(1)
	if old != nil {
		s.held.Add(-1)
		old.Release()
	}
	if e.meta.Load() != mp { // rewritten while we cached it: retire it again
		s.dropOpen(e)
	}
	return f, true
}

// dropOpen retires the file e holds open; users still sending it finish.
func (s *Store) dropOpen(e *entry) {
	if f := e.open.Swap(nil); f != nil {
		s.held.Add(-1)
		f.Release()
	}
}

// lookup returns rel's entry, indexing a file placed by hand; nil when
// there is no such file.
func (s *Store) lookup(rel string) *entry {
	v, found := s.index.Load(rel)
	if !found {
		if _, err := s.Stat(rel); err != nil {
			return nil
		}
		if v, found = s.index.Load(rel); !found {
			return nil
		}
	}
	return v.(*entry)
}

// isFile reports whether f is the file mp describes. A writer renames the
// new file into place before it swaps the entry's Meta, so a file opened
// in between is the next version while the Meta still says the last: its
// size and mtime (Commit sets it to LastModified) tell.
func isFile(f *os.File, mp *Meta) bool {
	info, err := f.Stat()
	return err == nil && info.Size() == mp.Size && info.ModTime().Equal(mp.LastModified)
}
