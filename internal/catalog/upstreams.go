package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/upstream"
)

// reloadDelay is how long an upstreams_file must be left alone after a
// change before it is read again, so that a writer's burst (truncate,
// then a few writes) is read once, when it is done.
const reloadDelay = 250 * time.Millisecond

// mirrorList is one mirror list of the catalog, a repo's or a distro's
// base files': the config's upstreams, then the Server lines of its
// upstreams_file that those lack. The set over them is replaced whole
// when the file changes; health stays with each mirror's template in the
// upstream client, so a mirror that stays keeps its record.
type mirrorList struct {
	name   string   // "archlinux/core", or "archlinux" for the base files; for logs
	listed []string // the config's upstreams
	file   string   // the upstreams_file, cleaned; "" for none
	proxy  *url.URL // nil: the environment's proxy
	up     *upstream.Client

	// set is the current set; nil only for a distro's base files whose
	// list is empty. Written by New and by the Watcher's goroutine, read
	// by every fetch.
	set atomic.Pointer[upstream.MirrorSet]
}

// newMirrorList builds the list and its first set, reading file now.
// An empty list is an error for a repo (required), not for base files.
func (c *Catalog) newMirrorList(up *upstream.Client, name string, listed []string, file, proxy string, required bool) (*mirrorList, error) {
	ml := &mirrorList{name: name, listed: listed, up: up}
	if proxy != "" {
		u, err := url.Parse(proxy) // checked by config.Validate
		if err != nil {
			return nil, fmt.Errorf("mirrors of %s: proxy: %w", name, err)
		}
		ml.proxy = u
	}
	var servers []string
	if file != "" {
		ml.file = filepath.Clean(file)
		var err error
		if servers, err = config.ReadMirrorlist(ml.file); err != nil {
			return nil, fmt.Errorf("mirrors of %s: %w", name, err)
		}
	}
	templates := merge(listed, servers)
	switch {
	case len(templates) > 0:
		ms, err := up.MirrorsVia(ml.proxy, templates)
		if err != nil {
			return nil, fmt.Errorf("mirrors of %s: %w", name, err)
		}
		ml.set.Store(ms)
	case required:
		return nil, fmt.Errorf("mirrors of %s: none (%s has no Server line)", name, file)
	}
	c.lists = append(c.lists, ml)
	return ml, nil
}

// merge is listed, then the servers listed lacks, each template once
// (a trailing '/' does not make another).
func merge(listed, servers []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range slices.Concat(listed, servers) {
		if k := strings.TrimRight(t, "/"); !seen[k] {
			seen[k] = true
			out = append(out, t)
		}
	}
	return out
}

// reload makes servers, the new content of the list's file, current.
// It reports whether the set changed.
func (ml *mirrorList) reload(servers []string) (bool, error) {
	templates := merge(ml.listed, servers)
	if cur := ml.set.Load(); cur != nil && slices.Equal(cur.Templates(), trimmed(templates)) {
		return false, nil
	}
	ms, err := ml.up.MirrorsVia(ml.proxy, templates)
	if err != nil {
		return false, err
	}
	ml.set.Store(ms)
	return true, nil
}

func trimmed(templates []string) []string {
	out := make([]string, len(templates))
	for i, t := range templates {
		out[i] = strings.TrimRight(t, "/")
	}
	return out
}

// Watcher keeps the mirror lists of the catalog's upstreams_files
// current while it runs: a file rewritten in place, or replaced by a
// rename (its folder is watched), is read again reloadDelay after its
// last change, and the sets it feeds are replaced. A file that cannot be
// read, has a bad line or no Server line any more leaves the last good
// list in use, with a warning.
type Watcher struct {
	w     *fsnotify.Watcher        // nil when no upstreams_file is configured
	names map[string]string        // a path that events name -> the upstreams_file it stands for
	lists map[string][]*mirrorList // upstreams_file -> the lists it feeds
	log   *slog.Logger

	// reloaded, if set (tests only), runs on Run's goroutine after every
	// reload: err is nil when the file's list is in use.
	reloaded func(file string, err error)
}

// NewWatcher starts watching the folders of the catalog's
// upstreams_files: a change made once it has returned is seen by Run.
// Close it unless Run is called.
func NewWatcher(c *Catalog) (*Watcher, error) {
	wt := &Watcher{names: map[string]string{}, lists: map[string][]*mirrorList{}, log: c.log}
	for _, ml := range c.lists {
		if ml.file != "" {
			wt.lists[ml.file] = append(wt.lists[ml.file], ml)
		}
	}
	if len(wt.lists) == 0 {
		return wt, nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch upstreams files: %w", err)
	}
	wt.w = w
	for file := range wt.lists {
		wt.names[file] = file
		// A symlinked file changes in its target's folder.
		if real, err := filepath.EvalSymlinks(file); err == nil && real != file {
			wt.names[real] = file
		}
	}
	dirs := map[string]bool{}
	for name := range wt.names {
		dirs[filepath.Dir(name)] = true
	}
	for dir := range dirs {
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch upstreams files in %s: %w", dir, err)
		}
	}
	return wt, nil
}

// Close stops watching.
func (wt *Watcher) Close() error {
	if wt.w == nil {
		return nil
	}
	return wt.w.Close()
}

// Run reloads changed files until ctx ends, then closes the watcher. It
// returns at once when no upstreams_file is configured.
func (wt *Watcher) Run(ctx context.Context) error {
	if wt.w == nil {
		return nil
	}
	defer wt.w.Close()
	pending := map[string]bool{}
	var due <-chan time.Time // fires reloadDelay after the last event of a pending file
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-wt.w.Events:
			if !ok {
				return nil
			}
			if file, ok := wt.names[filepath.Clean(ev.Name)]; ok {
				pending[file] = true
				due = time.After(reloadDelay)
			}
		case err, ok := <-wt.w.Errors:
			if !ok {
				return nil
			}
			// An overflowed event queue may have hidden a change.
			wt.log.Warn("watching upstreams files", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				for file := range wt.lists {
					pending[file] = true
				}
				due = time.After(reloadDelay)
			}
		case <-due:
			due = nil
			for _, file := range slices.Sorted(maps.Keys(pending)) {
				err := wt.reload(file)
				if wt.reloaded != nil {
					wt.reloaded(file, err)
				}
			}
			clear(pending)
		}
	}
}

// reload reads file again and replaces the sets it feeds; an error
// leaves them as they were, and is logged here.
func (wt *Watcher) reload(file string) error {
	servers, err := config.ReadMirrorlist(file)
	if err == nil && len(servers) == 0 {
		err = fmt.Errorf("%s: no Server line", file)
	}
	if err != nil {
		wt.log.Warn("upstreams_file unusable, keeping its last good mirror list", "file", file, "err", err)
		return err
	}
	var errs []error
	for _, ml := range wt.lists[file] {
		changed, err := ml.reload(servers)
		switch {
		case err != nil:
			wt.log.Warn("upstreams_file unusable, keeping its last good mirror list", "file", file, "repo", ml.name, "err", err)
			errs = append(errs, err)
		case changed:
			wt.log.Info("mirror list reloaded", "file", file, "repo", ml.name, "mirrors", len(ml.set.Load().Templates()))
		default:
			wt.log.Debug("upstreams_file rewritten, mirror list unchanged", "file", file, "repo", ml.name)
		}
	}
	return errors.Join(errs...)
}
