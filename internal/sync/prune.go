package sync

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// markUnreferenced records, after db was published in dir, since when
// each package file and signature of dir that db does not name has been
// unreferenced, and forgets the records of files db names again. Pruning
// deletes them sync.prune_after later, so that a client holding
// yesterday's db still finds its packages.
func (rn *run) markUnreferenced(dir string, db *parsedDB) error {
	named := make(map[string]bool, 2*len(db.pkgs))
	for _, p := range db.pkgs {
		named[p.file] = true
		named[p.file+".sig"] = true
	}
	entries, err := rn.s.store.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	now := strconv.FormatInt(rn.s.now().Unix(), 10)
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || named[name] || !isRepoFile(name) {
			continue
		}
		key := keyUnref + dir + "/" + name
		if _, err := rn.s.store.Get(key); errors.Is(err, store.ErrNotFound) {
			if err := rn.s.store.Put(key, []byte(now)); err != nil {
				return err
			}
		}
	}
	// Records of files named again, and "no signature upstream" records
	// of packages gone from the db, are dropped.
	var stale []string
	for _, prefix := range []string{keyUnref, keyNoSig} {
		err := rn.s.store.Scan(prefix+dir+"/", func(name string, _ []byte) error {
			if named[name] == (prefix == keyUnref) {
				stale = append(stale, prefix+dir+"/"+name)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, k := range stale {
		if err := rn.s.store.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// prune deletes the files of the repo's folders that have been
// unreferenced for sync.prune_after.
func (rn *run) prune() error {
	now := rn.s.now()
	after := rn.s.cfg.Sync.PruneAfter
	var errs []error
	for _, arch := range rn.r.Arches {
		dir := rn.dir(arch)
		var due []string
		err := rn.s.store.Scan(keyUnref+dir+"/", func(name string, val []byte) error {
			since, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || !now.Before(time.Unix(since, 0).Add(after)) {
				due = append(due, name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range due {
			rel := dir + "/" + name
			if err := rn.s.store.Remove(rel); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := rn.s.store.Delete(keyUnref + rel); err != nil {
				errs = append(errs, err)
				continue
			}
			rn.s.metrics.pruned.WithLabelValues(rn.r.Key).Inc()
			rn.s.log.Debug("pruned", "repo", rn.r.Key, "file", rel)
		}
	}
	return errors.Join(errs...)
}
