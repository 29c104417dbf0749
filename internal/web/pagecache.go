package web

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	stdsync "sync"
	"sync/atomic"
	"time"
)

// The index of a repo folder is rendered once per state of the folder and
// kept (a 10,000-file folder is 2 MB of HTML and 0.1 s of CPU).
//
// A folder's state is its version: device, inode, size, mtime and ctime,
// one lstat(2). Every file mirrord places in a folder is renamed or linked
// into it, which changes the folder's mtime and ctime, and so does a
// removal; a file's own size and times are set before it is placed. What
// a repo page shows beyond its folder is the db's list of files not cached
// yet, and the db is a file of that folder: a new db is a new version too.
//
// Timestamps come from a clock that ticks every few milliseconds (or every
// second on some filesystems), so two changes within one tick may leave
// the same version: a page rendered between them would be stale under a
// version that does not change again. So a version is trusted only once
// it is settled, older than its tick when the listing starts (racy git's
// rule); a page of an unsettled version is served to the requests that
// arrived before its listing began and is not kept.

// folderVersion identifies one state of a folder.
type folderVersion struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // unix ns
}

// versionOf is the version of a folder from its lstat.
func versionOf(fi fs.FileInfo) folderVersion {
	v := folderVersion{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	v.dev, v.ino, v.ctime = statIDs(fi)
	if v.ctime == 0 {
		v.ctime = v.mtime
	}
	return v
}

// tick is the longest timestamp granularity assumed of filesystems that
// store nanoseconds: the kernel's coarse clock ticks at HZ, 100 Hz at
// least. A version whose times have no fraction is from a filesystem with
// whole seconds (or at worst looks like one): a second.
const tick = 50 * time.Millisecond

// settledBefore reports whether no change at t or later can leave v
// unchanged: v's times are older than the granularity before t.
func (v folderVersion) settledBefore(t time.Time) bool {
	g := tick
	if v.mtime%int64(time.Second) == 0 && v.ctime%int64(time.Second) == 0 {
		g = time.Second
	}
	return max(v.mtime, v.ctime) < t.Add(-g).UnixNano()
}

// pageKey is one rendering of a folder: its path and the sort order.
type pageKey struct {
	rel  string
	sort string
	desc bool
}

// pageCache keeps rendered pages by key and folder version, at most max
// bytes of them (least recently used out first; a page over max/4 is not
// kept), and renders each key and version once for the requests that ask
// at the same time, as groupcache's load does. The zero value is not
// usable: see newPageCache.
type pageCache struct {
	max  int64
	skew atomic.Int64 // ns added to time.Now; tests move the clock

	mu      stdsync.Mutex             // guards the fields below; never held while rendering
	pages   map[pageKey]*list.Element // of *cachedPage
	lru     list.List                 // most recently used at the front
	used    int64                     // bytes of the pages' bodies
	flights map[pageKey]*pageFlight   // renders in progress, the newest per key

	// Counters: served from the cache, rendered, joined a render.
	hits, renders, shared atomic.Int64

	// Test hooks, unset in production: joined runs when a request joins
	// a render, before it waits; rendering when a render starts.
	joined, rendering atomic.Pointer[func()]
}

type cachedPage struct {
	key  pageKey
	ver  folderVersion
	body []byte
	etag string
}

// pageFlight is one render. The leader writes body, etag and err before
// it closes done; waiters read them after.
type pageFlight struct {
	ver     folderVersion
	started time.Time // before the folder is listed
	settled bool      // ver was settled at started: the page is kept
	done    chan struct{}
	body    []byte
	etag    string
	err     error
}

func newPageCache(max int64) *pageCache {
	return &pageCache{max: max, pages: map[pageKey]*list.Element{}, flights: map[pageKey]*pageFlight{}}
}

// now is the cache's clock: time.Now, unless a test moved it.
func (c *pageCache) now() time.Time { return time.Now().Add(time.Duration(c.skew.Load())) }

// get returns the page of key for a folder at version ver, as stat'ed by
// a request that arrived at arrived: from the cache, from a render in
// progress that lists the folder in that version, or from render, run
// here. etag is empty for a page that is not kept (of an unsettled
// version). A waiter cannot leave early: a render is CPU, not I/O, and
// ends in well under a second for the largest repo.
func (c *pageCache) get(key pageKey, ver folderVersion, arrived time.Time, render func() ([]byte, error)) (body []byte, etag string, err error) {
	c.mu.Lock()
	if e, ok := c.pages[key]; ok {
		if p := e.Value.(*cachedPage); p.ver == ver {
			c.lru.MoveToFront(e)
			c.mu.Unlock()
			c.hits.Add(1)
			return p.body, p.etag, nil
		}
	}
	// A render of the same version lists the folder as this request would,
	// if the version cannot have hidden a change since (settled), or if its
	// listing began after this request arrived.
	if fl := c.flights[key]; fl != nil && fl.ver == ver && (fl.settled || !fl.started.Before(arrived)) {
		c.mu.Unlock()
		c.shared.Add(1)
		if f := c.joined.Load(); f != nil {
			(*f)()
		}
		<-fl.done
		return fl.body, fl.etag, fl.err
	}
	fl := &pageFlight{ver: ver, started: c.now(), done: make(chan struct{})}
	fl.settled = ver.settledBefore(fl.started)
	c.flights[key] = fl
	c.mu.Unlock()

	c.renders.Add(1)
	defer func() { // also after a panic in render
		c.mu.Lock()
		if c.flights[key] == fl {
			delete(c.flights, key)
		}
		if fl.err == nil && fl.settled {
			c.putLocked(key, ver, fl.body, fl.etag)
		}
		c.mu.Unlock()
		close(fl.done)
	}()
	c.run(fl, render)
	return fl.body, fl.etag, fl.err
}

// run renders into fl. A panic becomes fl's error, which the waiters get,
// and the leader panics on (net/http logs it and drops the connection).
func (c *pageCache) run(fl *pageFlight, render func() ([]byte, error)) {
	defer func() {
		if v := recover(); v != nil {
			fl.body, fl.err = nil, fmt.Errorf("render panicked: %v", v)
			panic(v)
		}
	}()
	if f := c.rendering.Load(); f != nil {
		(*f)()
	}
	fl.body, fl.err = render()
	if fl.err == nil && fl.settled {
		sum := sha256.Sum256(fl.body)
		fl.etag = `"` + hex.EncodeToString(sum[:12]) + `"`
	}
}

// putLocked keeps a page, replacing the key's older one, and evicts the
// least recently used pages beyond max.
func (c *pageCache) putLocked(key pageKey, ver folderVersion, body []byte, etag string) {
	if e, ok := c.pages[key]; ok {
		c.used -= int64(len(e.Value.(*cachedPage).body))
		c.lru.Remove(e)
		delete(c.pages, key)
	}
	if int64(len(body)) > c.max/4 {
		return
	}
	c.pages[key] = c.lru.PushFront(&cachedPage{key: key, ver: ver, body: body, etag: etag})
	c.used += int64(len(body))
	for c.used > c.max {
		e := c.lru.Back()
		p := e.Value.(*cachedPage)
		c.lru.Remove(e)
		delete(c.pages, p.key)
		c.used -= int64(len(p.body))
	}
}
