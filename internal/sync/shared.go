package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// Bucket is the storage the nodes of a cluster share (a store.Objects):
// the sync of a mirror repo that asked upstream leaves there the
// databases it published, named by a manifest, and the other nodes'
// syncs take them from there instead of asking upstream again, so that
// every node serves the same state of the repo and upstream is asked once.
type Bucket interface {
	Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error)
	Put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error)
	Stat(ctx context.Context, key string) (store.ObjectMeta, error)
	Delete(ctx context.Context, key string) error
}

// Keys in the bucket, beside the tree (a distro may not be named
// _mirrord). A database's bytes are kept under their sha256, never
// overwritten, so that a manifest names complete files whatever a later
// sync writes; the manifest of a repo is replaced whole by each sync.
const (
	sharedPrefix   = "_mirrord/sync/"
	sharedObjects  = sharedPrefix + "sha256/"    // + distro/repo/sha256 of a db or its .sig
	sharedManifest = sharedPrefix + "manifests/" // + distro/repo
	// maxManifest bounds what is read of a manifest: a repo of a few
	// arches names a few dozen files.
	maxManifest = 1 << 20
	// maxSkew is how far ahead of this node's clock a manifest may be
	// dated: the nodes' clocks agree within the leases' margin.
	maxSkew = time.Minute
)

// manifest is the state of a mirror repo that one node's sync published:
// its databases and their signatures, by tree path, with what the
// published files were.
type manifest struct {
	LastUpdate string                        `json:"lastupdate,omitempty"` // upstream's, as that sync read it
	Node       string                        `json:"node,omitempty"`       // whose sync wrote it (Scheduler.self)
	SyncedAt   time.Time                     `json:"synced_at"`
	Files      map[string]store.ManifestFile `json:"files"`
	// Previous is the sha256s the manifest before this one named: a node
	// may still be reading them, so only those of the one before that are
	// deleted.
	Previous []string `json:"previous,omitempty"`
	// Unsigned is the repo's folders whose upstream publishes no package
	// signatures (see probeSigs): a node that takes the manifest asks
	// for none there, and for every one elsewhere.
	Unsigned []string `json:"unsigned,omitempty"`
}

// sharedFiles are the tree paths of r's databases and signatures that a
// manifest may name, each signature before its database (the order they
// are put in the bucket's tree).
func sharedFiles(r *repo) []string {
	var rels []string
	for _, arch := range r.Arches {
		dir := r.Dir(arch) + "/" + r.Name
		rels = append(rels, dir+".files.sig", dir+".files", dir+".db.sig", dir+".db")
	}
	return rels
}

// readManifest returns r's manifest in the bucket and its version: nil
// if there is none, or one that does not read as a manifest of r (which
// the next sync that asks upstream replaces); version "" if there is none.
func (s *Scheduler) readManifest(ctx context.Context, r *repo) (*manifest, string, error) {
	m := &manifest{}
	version, ok, err := store.ReadManifest(ctx, s.bucket, sharedManifest+r.Key, maxManifest, m)
	if err != nil || version == "" {
		return nil, version, err
	}
	if !ok || !m.valid(r, s.now()) {
		s.log.Warn("ignoring an unreadable sync manifest in the bucket", "repo", r.Key)
		return nil, version, nil
	}
	return m, version, nil
}

// valid reports whether m names only r's databases, each with a sha256,
// and says when it was written and upstream's lastupdate as a sync reads
// them: whoever can write the bucket must not make a node write
// elsewhere, nor keep a manifest fresh by dating it ahead.
func (m *manifest) valid(r *repo, now time.Time) bool {
	if m.Files == nil || m.SyncedAt.IsZero() || m.SyncedAt.After(now.Add(maxSkew)) {
		return false
	}
	if m.LastUpdate != "" && !validLastUpdate(m.LastUpdate) {
		return false
	}
	for rel, f := range m.Files {
		if !slices.Contains(sharedFiles(r), rel) || f.Size < 0 || store.ReadSHA256(f.SHA256) == "" {
			return false
		}
	}
	for _, sum := range m.Previous {
		if store.ReadSHA256(sum) == "" {
			return false
		}
	}
	for _, dir := range m.Unsigned {
		if !slices.ContainsFunc(r.Arches, func(a string) bool { return r.Dir(a) == dir }) {
			return false
		}
	}
	return true
}

// followable returns r's manifest when this sync may take it instead of
// asking upstream: a sync of another node (or of this one, before it lost
// that state) published it less than the repo's sync_interval ago.
func (s *Scheduler) followable(ctx context.Context, r *repo) *manifest {
	if s.bucket == nil {
		return nil
	}
	m, _, err := s.readManifest(ctx, r)
	if err != nil {
		s.log.Warn("asking upstream: the bucket's manifest cannot be read", "repo", r.Key, "err", err)
		return nil
	}
	if m == nil || s.now().Sub(m.SyncedAt) >= r.interval {
		return nil
	}
	if m.Node == s.self && !s.behind(m) {
		// This node's own last sync, which it serves: following it would
		// put off asking upstream by another interval.
		return nil
	}
	return m
}

// behind reports whether m names a database this node has not published.
func (s *Scheduler) behind(m *manifest) bool {
	for rel, f := range m.Files {
		if strings.HasSuffix(rel, ".sig") {
			continue
		}
		v, err := s.store.Get(keyDB + rel)
		if err != nil || string(v) != f.SHA256 {
			return true
		}
	}
	return false
}

// share puts what the sync of r published into the bucket: each database
// and signature under its sha256 and at its tree path, then the manifest
// that names them, and deletes the files of the manifest before the last.
//
// The manifest replaces the one read at the start only if it is still
// that one: the syncs take turns under a lease, but a node paused past
// its lease's expiry must not put back an older state over a newer.
func (s *Scheduler) share(ctx context.Context, r *repo, lastupdate string) error {
	old, version, err := s.readManifest(ctx, r)
	if err != nil {
		return err
	}
	m := &manifest{LastUpdate: lastupdate, Node: s.self, SyncedAt: s.now(), Files: map[string]store.ManifestFile{}}
	for _, rel := range sharedFiles(r) {
		meta, err := s.store.Stat(rel)
		if errors.Is(err, store.ErrNotFound) {
			continue // an unsigned db, or no .files upstream
		}
		if err != nil {
			return err
		}
		if meta.SHA256 == "" {
			return fmt.Errorf("share %s: no sha256 recorded", rel)
		}
		f := store.ManifestFile{Size: meta.Size, SHA256: meta.SHA256, ETag: meta.ETag, LastModified: meta.LastModified}
		if err := s.upload(ctx, sharedObject(r, f.SHA256), rel, f.ObjectMeta(), true); err != nil {
			return err
		}
		m.Files[rel] = f
	}
	for _, arch := range r.Arches {
		if _, err := s.store.Get(keyUnsigned + r.Dir(arch)); err == nil {
			m.Unsigned = append(m.Unsigned, r.Dir(arch))
		}
	}
	var drop []string
	if old != nil {
		m.Previous, drop = store.Succession(old.Files, old.Previous, m.Files)
	}
	if err := store.WriteManifest(ctx, s.bucket, sharedManifest+r.Key, m, version); err != nil {
		return fmt.Errorf("share %s: %w", r.Key, err)
	}
	// The bucket's tree is a mirror too: its own copies, after the
	// packages (which this sync put there first) and only once the
	// manifest says this state is the current one; each signature before
	// its db, and one the new state lacks removed.
	for _, rel := range sharedFiles(r) {
		f, ok := m.Files[rel]
		if !ok {
			if err := s.bucket.Delete(ctx, rel); err != nil {
				return fmt.Errorf("share %s: %w", rel, err)
			}
			continue
		}
		if err := s.upload(ctx, rel, rel, f.ObjectMeta(), false); err != nil {
			return err
		}
	}
	for _, sum := range drop {
		if err := s.bucket.Delete(ctx, sharedObject(r, sum)); err != nil {
			s.log.Warn("delete an old shared database", "repo", r.Key, "sha256", sum, "err", err)
		}
	}
	return nil
}

// upload puts the tree's rel into the bucket at key, unless key holds
// these bytes already (a sync that found upstream unchanged uploads
// nothing); with PutIfAbsent if immutable says key names these bytes
// whoever writes it.
func (s *Scheduler) upload(ctx context.Context, key, rel string, meta store.ObjectMeta, immutable bool) error {
	if cur, err := s.bucket.Stat(ctx, key); err == nil && cur.Size == meta.Size && cur.SHA256 == meta.SHA256 {
		return nil
	}
	f, err := s.store.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	if immutable {
		err = s.bucket.PutIfAbsent(ctx, key, f, meta)
		if errors.Is(err, store.ErrExists) {
			err = nil // the same bytes, by their name: another node's
		}
	} else {
		err = s.bucket.Put(ctx, key, f, meta)
	}
	if err != nil {
		return fmt.Errorf("share %s: %w", rel, err)
	}
	return nil
}

// fetchShared opens the bucket's copy of a database the manifest names,
// checked against the manifest as it is read (the last byte held back
// until the size and sha256 match).
func (s *Scheduler) fetchShared(ctx context.Context, r *repo, f store.ManifestFile) (io.ReadCloser, error) {
	key := sharedObject(r, f.SHA256)
	body, _, err := s.bucket.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("shared database %s: %w", f.SHA256, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{store.CheckedReader(key, body, f.ObjectMeta()), body}, nil
}

// watch, in a cluster, looks at each mirror repo's manifest every
// cache.db_max_age (at least a second) and starts a sync of a repo whose
// manifest names databases this node has not published, so that the
// nodes serve the same state soon after one of them synced; until ctx
// ends.
func (s *Scheduler) watch(ctx context.Context) {
	every := max(s.cfg.Cache.DBMaxAge, time.Second)
	seen := map[string]string{} // repo -> the manifest version last looked at
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, k := range slices.Sorted(maps.Keys(s.repos)) {
			if err := s.look(ctx, s.repos[k], seen); err != nil && !errors.Is(err, store.ErrNotFound) {
				s.log.Debug("look at the bucket's manifest", "repo", k, "err", err)
			}
		}
	}
}

// look starts a sync of r if its manifest changed since seen[r.Key] and
// names a database this node has not published.
func (s *Scheduler) look(ctx context.Context, r *repo, seen map[string]string) error {
	meta, err := s.bucket.Stat(ctx, sharedManifest+r.Key)
	if err != nil || meta.Version == seen[r.Key] {
		return err
	}
	m, _, err := s.readManifest(ctx, r)
	if err != nil {
		return err
	}
	if m != nil && s.behind(m) {
		// Not marked seen: asked again at the next look, until a sync
		// took it (or a newer one).
		select {
		case r.follow <- struct{}{}:
		default: // one is pending already
		}
		return nil
	}
	seen[r.Key] = meta.Version // nothing to take: unreadable (warned once), or taken
	return nil
}

// from names where the run took the databases, for the log.
func (rn *run) from() string {
	if rn.follow != nil {
		return "bucket"
	}
	return "upstream"
}

// sharedObject is the key of a db file of r by its sha256: per repo, as
// each repo collects its own (two repos may have the same bytes).
func sharedObject(r *repo, sum string) string { return sharedObjects + r.Key + "/" + sum }
