package hosted

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// In a cluster the publisher shares every database it builds: the files
// of one arch's folder under their sha256 (never overwritten, so that a
// manifest always names complete files), then that folder's manifest,
// then copies at their tree paths (the bucket is a static mirror too).
// The other nodes follow the manifests into their trees (Follower).
const (
	bucketManifests = bucketPrefix + "manifests/" // + an arch's tree folder
	bucketDBs       = bucketPrefix + "dbs/"       // + an arch's tree folder + "/" + sha256
	maxManifest     = 64 << 10                    // four files
)

// errFenced is a share refused because a publisher with a later lease
// token wrote the manifest: this node publishes no more.
var errFenced = errors.New("a later publisher shared this folder")

// dbManifest is one arch folder's databases as a publisher built them.
type dbManifest struct {
	// Token is the publisher's lease token: a manifest is never replaced
	// by one of a lower token, so that a publisher paused past its lease
	// cannot put back an older state.
	Token uint64                        `json:"token"`
	Files map[string]store.ManifestFile `json:"files"` // by name in the folder (dbFiles)
	// Previous is the sha256s the manifest before this one named: a
	// node may still be copying them; those of the one before are
	// deleted.
	Previous []string `json:"previous,omitempty"`
}

// dbFiles are the files of repo's databases in an arch folder, in the
// order they are put in place: each signature before its file, the
// files db before the db (as build writes them).
func dbFiles(repo string) []string {
	return []string{repo + ".files.tar.gz.sig", repo + ".files.tar.gz", repo + ".db.tar.gz.sig", repo + ".db.tar.gz"}
}

// dbLinks are the names pacman asks for, each a link to its file.
func dbLinks(repo string) map[string]string {
	return map[string]string{
		repo + ".files": repo + ".files.tar.gz", repo + ".files.sig": repo + ".files.tar.gz.sig",
		repo + ".db": repo + ".db.tar.gz", repo + ".db.sig": repo + ".db.tar.gz.sig",
	}
}

// readDBManifest is the manifest of dir and its version: nil and "" if
// there is none; nil and its version if it does not read as one of repo
// (the next share replaces it).
func readDBManifest(ctx context.Context, b Bucket, dir, repo string) (*dbManifest, string, error) {
	m := &dbManifest{}
	version, ok, err := store.ReadManifest(ctx, b, bucketManifests+dir, maxManifest, m)
	if err != nil || version == "" || !ok || !m.valid(repo) {
		return nil, version, err
	}
	return m, version, nil
}

// valid reports whether m names only repo's db files, each with its
// size and sha256: whoever can write the bucket must not make a node
// write elsewhere.
func (m *dbManifest) valid(repo string) bool {
	if m.Files == nil || m.Files[repo+".db.tar.gz"].SHA256 == "" {
		return false
	}
	for name, f := range m.Files {
		if !slices.Contains(dbFiles(repo), name) || f.Size < 0 || store.ReadSHA256(f.SHA256) == "" {
			return false
		}
	}
	for _, sum := range m.Previous {
		if store.ReadSHA256(sum) == "" {
			return false
		}
	}
	return true
}

// shareDB puts the databases just built in dir into the bucket and names
// them in dir's manifest, unless a later publisher wrote it (errFenced).
func (s *Service) shareDB(dir, repo string) error {
	ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
	defer cancel()
	old, version, err := readDBManifest(ctx, s.bucket, dir, repo)
	if err != nil {
		return err
	}
	if old != nil && old.Token > s.token {
		return fmt.Errorf("%w (token %d, this one's %d)", errFenced, old.Token, s.token)
	}
	m := &dbManifest{Token: s.token, Files: map[string]store.ManifestFile{}}
	for _, name := range dbFiles(repo) {
		rel := path.Join(dir, name)
		f, err := s.store.Open(rel)
		if errors.Is(err, store.ErrNotFound) {
			continue // unsigned
		}
		if err != nil {
			return err
		}
		meta, err := s.fileObjectMeta(rel, f)
		if err == nil {
			err = s.bucket.Put(ctx, bucketDBs+dir+"/"+meta.SHA256, f, meta)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		m.Files[name] = store.ManifestFile{Size: meta.Size, SHA256: meta.SHA256, LastModified: meta.LastModified}
	}
	var drop []string
	if old != nil {
		m.Previous, drop = store.Succession(old.Files, old.Previous, m.Files)
	}
	if err := store.WriteManifest(ctx, s.bucket, bucketManifests+dir, m, version); err != nil {
		return err
	}
	// The bucket's tree, by the names pacman asks for.
	for link, name := range dbLinks(repo) {
		f, ok := m.Files[name]
		if !ok {
			if err := s.bucket.Delete(ctx, path.Join(dir, link)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			continue
		}
		body, err := s.store.Open(path.Join(dir, name))
		if err != nil {
			return err
		}
		err = s.bucket.Put(ctx, path.Join(dir, link), body, f.ObjectMeta())
		body.Close()
		if err != nil {
			return fmt.Errorf("share %s: %w", path.Join(dir, link), err)
		}
	}
	for _, sum := range drop {
		if err := s.bucket.Delete(ctx, bucketDBs+dir+"/"+sum); err != nil {
			s.log.Warn("delete an old shared database", "folder", dir, "sha256", sum, "err", err)
		}
	}
	return nil
}

// fileObjectMeta is what the bucket's copy of the tree's rel (open as f)
// carries: the size, sha256 and date the store recorded, the sha256
// hashed here for a signature (which the store records without).
func (s *Service) fileObjectMeta(rel string, f *os.File) (store.ObjectMeta, error) {
	m, err := s.store.Stat(rel)
	if err != nil {
		return store.ObjectMeta{}, err
	}
	if m.SHA256 != "" {
		return store.ObjectMeta{Size: m.Size, SHA256: m.SHA256, LastModified: m.LastModified}, nil
	}
	meta, err := fileMeta(f)
	meta.LastModified = m.LastModified
	return meta, err
}

// Follower keeps a node's copies of the hosted databases as the
// publisher last shared them, for a node of a cluster that does not
// publish: its catalog (the API's and web UI's views) reads them, and it
// serves them while the publisher cannot be reached.
type Follower struct {
	cat    *catalog.Catalog
	st     *store.Store
	bucket Bucket
	log    *slog.Logger
	seen   map[string]string // folder -> the manifest version in the tree
}

// NewFollower follows the hosted repos of cat into st from bucket.
func NewFollower(cat *catalog.Catalog, st *store.Store, bucket Bucket, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Follower{cat: cat, st: st, bucket: bucket, log: log, seen: map[string]string{}}
}

// Follow looks at every hosted folder's manifest once and puts in the
// tree the databases of each that changed. Not safe for concurrent use,
// nor while a Service publishes into the same tree.
func (f *Follower) Follow(ctx context.Context) error {
	var errs []error
	for _, cr := range f.cat.Repos() {
		if cr.Mode != config.ModeHosted {
			continue
		}
		for _, a := range cr.Arches {
			if err := f.follow(ctx, cr.Dir(a), cr.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Forget makes the next Follow compare every folder with the tree again:
// after a Service published into it.
func (f *Follower) Forget() { clear(f.seen) }

func (f *Follower) follow(ctx context.Context, dir, repo string) error {
	m, version, err := readDBManifest(ctx, f.bucket, dir, repo)
	if err != nil || m == nil || version == f.seen[dir] {
		return err
	}
	type fetched struct {
		name string
		tmp  *os.File
		file store.ManifestFile
	}
	var todo []fetched
	defer func() {
		for _, t := range todo {
			t.tmp.Close()
			os.Remove(t.tmp.Name())
		}
	}()
	for _, name := range dbFiles(repo) {
		want, ok := m.Files[name]
		if !ok {
			continue
		}
		if cur, err := f.st.Stat(path.Join(dir, name)); err == nil && cur.SHA256 == want.SHA256 {
			continue
		}
		tmp, err := f.st.CreateTemp("follow-*")
		if err != nil {
			return err
		}
		todo = append(todo, fetched{name, tmp, want})
		key := bucketDBs + dir + "/" + want.SHA256
		body, _, err := f.bucket.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("follow %s: %w", path.Join(dir, name), err)
		}
		_, err = io.Copy(tmp, store.CheckedReader(key, body, want.ObjectMeta()))
		body.Close()
		if err != nil {
			return fmt.Errorf("follow %s: %w", path.Join(dir, name), err)
		}
	}
	// Every file is here and checked: put them in place, in order.
	for len(todo) > 0 {
		t := todo[0]
		rel := path.Join(dir, t.name)
		if err := f.st.Commit(t.tmp, rel, store.Meta{SHA256: t.file.SHA256, LastModified: t.file.LastModified}); err != nil {
			return err
		}
		t.tmp.Close()
		todo = todo[1:]
	}
	for link, name := range dbLinks(repo) {
		rel := path.Join(dir, link)
		if _, ok := m.Files[name]; !ok {
			// An unsigned repo now: no signature, and no link to one.
			if err := f.st.Remove(rel); err != nil {
				return err
			}
			if err := f.st.Remove(path.Join(dir, name)); err != nil {
				return err
			}
			continue
		}
		if target, ok := f.st.Readlink(rel); !ok || target != name {
			if err := f.st.Symlink(name, rel); err != nil {
				return err
			}
		}
		if !strings.HasSuffix(link, ".sig") {
			f.cat.Committed(rel)
		}
	}
	f.seen[dir] = version
	db := m.Files[repo+".db.tar.gz"]
	f.log.Debug("followed the publisher's databases", "folder", dir, "token", m.Token, "db_sha256", db.SHA256, "db_size", db.Size)
	return nil
}
