package prefetch

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

const (
	// recordEvery is how often one file's requests reach its record: the
	// hit path pays a map lookup and a clock read, and takes the
	// folder's lock at most once per file and minute.
	recordEvery = 60 // seconds
	// maxNames bounds the names recorded per repo folder (Arch's extra
	// has some 15,000); names beyond it are not recorded until the
	// horizon frees room.
	maxNames = 1 << 16
	// saveEvery is how often changed records are written to the store.
	saveEvery = time.Minute
	// keyPrefix namespaces the records in the store: one key per folder.
	keyPrefix = "prefetch/"
)

// record is what clients asked for of one package name in one folder.
type record struct {
	Version string    `json:"version"`       // the newest version asked for
	Sig     bool      `json:"sig,omitempty"` // a .sig was asked for too
	At      time.Time `json:"at"`            // the last request
}

// Requested records that a client got t, a package file or its .sig in
// a proxy repo (proxy.Recorder). It is on the hit path: a file already
// recorded in the last minute costs one map lookup, and nothing blocks.
// Only files a client got are recorded (the proxy calls it after serving
// them), so a client asking for names that do not exist grows nothing.
func (p *Prefetcher) Requested(t catalog.Target) {
	if len(p.folders) == 0 || t.Mode != config.ModeProxy {
		return
	}
	now := p.now().Unix()
	if v, ok := p.recent.Load(t.Rel); ok {
		at := v.(*atomic.Int64)
		last := at.Load()
		if now-last < recordEvery || !at.CompareAndSwap(last, now) {
			return // recorded a moment ago, or by a request racing this one
		}
	} else {
		stamp := new(atomic.Int64)
		stamp.Store(now)
		if _, loaded := p.recent.LoadOrStore(t.Rel, stamp); loaded {
			return
		}
	}
	p.record(t, time.Unix(now, 0))
}

// record notes t's name and version in its folder's records.
func (p *Prefetcher) record(t catalog.Target, at time.Time) {
	f := p.byDir[path.Dir(t.Rel)]
	if f == nil {
		return
	}
	file, sig := strings.CutSuffix(t.File, ".sig")
	name, err := alpm.ParseFileName(file)
	if err != nil {
		return // not a package file: nothing to prefetch
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.names[name.Name]
	switch {
	case r == nil && len(f.names) >= maxNames:
		return
	case r == nil:
		r = &record{Version: name.Version}
		f.names[name.Name] = r
	case alpm.Vercmp(name.Version, r.Version) > 0:
		r.Version = name.Version
	}
	r.At = at
	r.Sig = r.Sig || sig
	f.dirty = true
}

// load reads f's records from the store. A record that cannot be read is
// logged and dropped: it only costs some prefetches.
func (p *Prefetcher) load(f *folder) {
	val, err := p.store.Get(f.key)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	var names map[string]*record
	if err == nil {
		err = json.Unmarshal(val, &names)
	}
	if err != nil {
		p.log.Warn("cannot read the prefetch record; starting it afresh", "dir", f.dir, "err", err)
		return
	}
	for name, r := range names {
		if r != nil && len(f.names) < maxNames {
			f.names[name] = r
		}
	}
}

// save writes the records that changed to the store, without the names
// last asked for before the horizon, and forgets the stamps Requested no
// longer needs. It runs every saveEvery and once when Run ends.
func (p *Prefetcher) save() {
	now := p.now()
	cutoff := now.Add(-p.cfg.PrefetchHorizon)
	for _, f := range p.folders {
		f.mu.Lock()
		if !f.dirty {
			f.mu.Unlock()
			continue
		}
		for name, r := range f.names {
			if r.At.Before(cutoff) {
				delete(f.names, name)
			}
		}
		val, err := json.Marshal(f.names)
		f.dirty = false
		f.mu.Unlock()
		if err == nil {
			err = p.store.Put(f.key, val)
		}
		if err != nil {
			f.mu.Lock()
			f.dirty = true // try again next time
			f.mu.Unlock()
			p.log.Warn("save the prefetch record", "dir", f.dir, "err", err)
		}
	}
	// A stamp stays while its file may still be prefetched, so that a hot
	// file's hits keep updating it in place (Requested's CompareAndSwap)
	// instead of storing a new one each minute.
	horizon := int64(p.cfg.PrefetchHorizon / time.Second)
	p.recent.Range(func(k, v any) bool {
		if now.Unix()-v.(*atomic.Int64).Load() >= horizon {
			p.recent.CompareAndDelete(k, v)
		}
		return true
	})
}
