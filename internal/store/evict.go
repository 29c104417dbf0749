package store

import (
	"sort"
)

// Evict removes least-recently-used evictable files until the evictable
// bytes fit in MaxSize. It returns how many files it removed.
func (s *Store) Evict() (int, error) {
	if s.opts.MaxSize <= 0 || s.opts.Evictable == nil {
		return 0, nil
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	type candidate struct {
		rel  string
		size int64
		at   int64
	}
	var cands []candidate
	var total int64
	s.index.Range(func(k, v any) bool {
		rel := k.(string)
		if !s.opts.Evictable(rel) {
			return true
		}
		e := v.(*entry)
		size := e.meta.Load().Size
		total += size
		cands = append(cands, candidate{rel, size, e.lastAccess.Load()})
		return true
	})
	if total <= s.opts.MaxSize {
		return 0, nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].at < cands[j].at })
	n := 0
	for _, c := range cands {
		if total <= s.opts.MaxSize {
			break
		}
		if err := s.Remove(c.rel); err != nil {
			return n, err
		}
		total -= c.size
		n++
		s.metrics.evictions.Inc()
		s.log.Debug("evicted", "file", c.rel, "bytes", c.size)
	}
	return n, nil
}
