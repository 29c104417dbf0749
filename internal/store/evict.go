package store

import (
	"path"
	"sort"
	"strings"

	"github.com/mirrord/mirrord/internal/alpm"
)

// Evict trims the evictable files: first to KeepVersions versions per
// package name and folder (like paccache -rk), then, least recently used
// first, until their bytes fit in MaxSize. Files that Pinned names (the
// current database's) are kept by the first rule but not by the second:
// the size bound wins, and a pinned file is fetched again when asked for.
// A package's .sig goes with it. It returns how many files it removed.
func (s *Store) Evict() (int, error) {
	if s.opts.Evictable == nil {
		return 0, nil
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	type candidate struct {
		rel  string
		size int64 // with its .sig
		at   int64
	}
	var cands []candidate
	sizes := map[string]int64{} // evictable file -> size
	s.index.Range(func(k, v any) bool {
		if rel := k.(string); s.opts.Evictable(rel) {
			sizes[rel] = v.(*entry).meta.Load().Size
		}
		return true
	})
	n := 0
	remove := func(rel string) error {
		for _, r := range []string{rel, rel + ".sig"} {
			if _, ok := sizes[r]; !ok {
				continue
			}
			if err := s.Remove(r); err != nil {
				return err
			}
			delete(sizes, r)
			n++
			s.metrics.evictions.Inc()
			s.log.Debug("evicted", "file", r)
		}
		return nil
	}
	for _, rel := range s.oldVersions(sizes) {
		if err := remove(rel); err != nil {
			return n, err
		}
	}
	if s.opts.MaxSize <= 0 {
		return n, nil
	}
	var total int64
	for rel, size := range sizes {
		total += size
		if strings.HasSuffix(rel, ".sig") {
			if _, ok := sizes[strings.TrimSuffix(rel, ".sig")]; ok {
				continue // counted with its package
			}
		}
		c := candidate{rel: rel, size: size + sizes[rel+".sig"]}
		if v, ok := s.index.Load(rel); ok {
			c.at = v.(*entry).lastAccess.Load()
		}
		cands = append(cands, c)
	}
	if total <= s.opts.MaxSize {
		return n, nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].at < cands[j].at })
	for _, c := range cands {
		if total <= s.opts.MaxSize {
			break
		}
		if err := remove(c.rel); err != nil {
			return n, err
		}
		total -= c.size
	}
	return n, nil
}

// oldVersions lists the package files beyond the newest KeepVersions of
// each package name in each folder, skipping pinned ones.
func (s *Store) oldVersions(files map[string]int64) []string {
	if s.opts.KeepVersions <= 0 {
		return nil
	}
	type version struct {
		rel, version string
	}
	groups := map[string][]version{} // folder + name -> versions
	for rel := range files {
		fn, err := alpm.ParseFileName(path.Base(rel))
		if err != nil {
			continue // a .sig, or not a package
		}
		key := path.Dir(rel) + "/" + fn.Name + "/" + fn.Arch
		groups[key] = append(groups[key], version{rel, fn.Version})
	}
	var old []string
	for _, vs := range groups {
		if len(vs) <= s.opts.KeepVersions {
			continue
		}
		sort.Slice(vs, func(i, j int) bool { return alpm.Vercmp(vs[i].version, vs[j].version) > 0 })
		for _, v := range vs[s.opts.KeepVersions:] {
			if s.opts.Pinned == nil || !s.opts.Pinned(v.rel) {
				old = append(old, v.rel)
			}
		}
	}
	sort.Strings(old)
	return old
}
