package sync

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// errBadBytes is a mirror's answer that cannot be what it claims: a
// database that does not parse, a length that disagrees. Like
// fetch.ErrVerify it makes the sync ask the mirrors one by one.
var errBadBytes = errors.New("bad bytes")

func isBadBytes(err error) bool {
	return errors.Is(err, errBadBytes) || errors.Is(err, fetch.ErrVerify)
}

// run is one sync attempt of one repo.
type run struct {
	s    *Scheduler
	r    *repo
	prev State // the state before this attempt
	// ms is the repo's mirror set as the attempt began: a new
	// upstreams_file applies from the next attempt on.
	ms *upstream.MirrorSet
	// follow is the manifest in the bucket this run takes the databases
	// from, instead of upstream; nil: from upstream.
	follow *manifest

	files, bytes atomic.Int64 // brought into the tree by this run
	unchanged    bool         // upstream's lastupdate had not moved

	mu   stdsync.Mutex       // guards bad and good
	bad  map[string]bool     // templates that sent bad bytes during this run
	good *upstream.MirrorSet // ms without the bad ones; nil: none left

	// batch holds the files download brought in, durable together (see
	// download); set by download for the arch it runs.
	batch    *store.Batch
	flushing atomic.Bool // a worker is flushing batch early
}

// do syncs every arch of the repo and returns upstream's lastupdate as
// read before anything else, so that a change upstream during the sync is
// seen by the next one.
func (rn *run) do(ctx context.Context) (string, error) {
	lu := ""
	if rn.follow != nil {
		// No shortcut on lastupdate: the manifest names its dbs by
		// sha256, and stageShared finds an unchanged one at no cost.
		lu = rn.follow.LastUpdate
	} else {
		lu = rn.lastupdate(ctx)
	}
	if rn.follow == nil && lu != "" && lu == rn.prev.LastUpdate && !rn.prev.LastSuccess.IsZero() && rn.dbsPresent() && !rn.copying() {
		rn.unchanged = true
		return lu, rn.prune()
	}
	var errs []error
	for _, arch := range rn.r.Arches {
		if err := rn.syncArch(ctx, arch); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", arch, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Pruning depends only on what was published, so it runs even when
	// an arch failed: a stuck upstream must not make the tree grow.
	if err := rn.prune(); err != nil {
		errs = append(errs, err)
	}
	return lu, errors.Join(errs...)
}

// lastupdate returns upstream's lastupdate, or "" when it has none or
// cannot be read: then every db is checked with a conditional GET.
func (rn *run) lastupdate(ctx context.Context) string {
	resp, err := rn.ms.Fetch(ctx, upstream.Request{File: "lastupdate"})
	if err != nil {
		rn.s.log.Debug("no lastupdate upstream", "repo", rn.r.Key, "err", err)
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	v := strings.TrimSpace(string(b))
	if err != nil || !validLastUpdate(v) {
		return ""
	}
	return v
}

// validLastUpdate reports whether v reads as a lastupdate: a unix time,
// digits only.
func validLastUpdate(v string) bool { return v != "" && strings.Trim(v, "0123456789") == "" }

func (rn *run) dir(arch string) string { return rn.r.Dir(arch) }

func (rn *run) dbsPresent() bool {
	for _, arch := range rn.r.Arches {
		if _, err := rn.s.store.Stat(rn.dir(arch) + "/" + rn.r.Name + ".db"); err != nil {
			return false
		}
	}
	return true
}

// staged is a database (or signature) fetched into tmp/, not yet published.
type staged struct {
	rel       string
	tmp       *os.File // nil unless a new copy was fetched
	meta      store.Meta
	db        *parsedDB // parsed, for .db and .files
	unchanged bool      // 304 to the validators of the copy we published
	absent    bool      // 404 from every mirror
}

func (st *staged) discard() {
	if st.tmp != nil {
		st.tmp.Close()
		os.Remove(st.tmp.Name())
		st.tmp = nil
	}
}

// syncArch brings one repo folder up to date: dbs staged, packages and
// signatures fetched and verified, then dbs published.
func (rn *run) syncArch(ctx context.Context, arch string) error {
	dir := rn.dir(arch)
	name := rn.r.Name
	db, err := rn.stage(ctx, arch, dir+"/"+name+".db", true)
	if err != nil {
		return err
	}
	defer db.discard()
	if db.absent {
		return fmt.Errorf("upstream has no %s.db: keeping ours", name)
	}
	files, err := rn.stage(ctx, arch, dir+"/"+name+".files", true)
	if err != nil {
		return err
	}
	defer files.discard()
	if files.absent {
		rn.s.log.Warn("upstream has no files db; keeping ours", "repo", rn.r.Key, "file", files.rel)
	}
	var dbSig, filesSig *staged
	// A db's signature changes with it; for an unchanged db the one in
	// the tree is already right (it is published before its db).
	if db.tmp != nil {
		if dbSig, err = rn.stage(ctx, arch, db.rel+".sig", false); err != nil {
			return err
		}
		defer dbSig.discard()
	}
	if files.tmp != nil {
		if filesSig, err = rn.stage(ctx, arch, files.rel+".sig", false); err != nil {
			return err
		}
		defer filesSig.discard()
	}
	// Publish: each db after its signature, the .db last, so that a crash
	// anywhere leaves the old .db in place and the next sync redoes it.
	publish := func() error {
		for _, p := range [][2]*staged{{files, filesSig}, {db, dbSig}} {
			if err := rn.publish(p[0], p[1]); err != nil {
				return err
			}
		}
		return nil
	}
	if db.tmp == nil {
		if err := publish(); err != nil {
			return err
		}
		return rn.copyPending(ctx, arch, dir, db.rel)
	}
	if rn.follow != nil {
		// The bucket holds every package these dbs name (the sync that
		// asked upstream put each there before its manifest), and a miss
		// on one is filled from there: publish first, so that a node
		// with an empty disk serves the cluster's state at once, then
		// copy the packages. The mark, put before the db, makes every
		// later sync finish a copy that failed or was cut.
		if err := rn.s.store.Put(keyCopying+dir, []byte(db.meta.SHA256)); err != nil {
			return fmt.Errorf("mark %s copying: %w", dir, err)
		}
		if err := publish(); err != nil {
			return err
		}
		if err := rn.markUnreferenced(dir, db.db); err != nil {
			return err
		}
		return rn.copied(ctx, arch, dir, db.db)
	}
	// Until the new db is published, whoever fetches one of its packages
	// (this sync, or a proxy client) checks it against it.
	defer rn.s.catalog.Expecting(dir, db.db.expectations())()
	if err := rn.download(ctx, arch, dir, db.db); err != nil {
		return err
	}
	if err := publish(); err != nil {
		return err
	}
	if err := rn.markUnreferenced(dir, db.db); err != nil {
		return err
	}
	return rn.s.store.Delete(keyCopying + dir)
}

// copied downloads the packages of the published db and then clears
// dir's copying mark.
func (rn *run) copied(ctx context.Context, arch, dir string, db *parsedDB) error {
	if err := rn.download(ctx, arch, dir, db); err != nil {
		return fmt.Errorf("copy the packages of the published db: %w", err)
	}
	return rn.s.store.Delete(keyCopying + dir)
}

// copyPending finishes the copy of the packages of the tree's db of dir,
// published before its packages by a sync that failed or was cut since
// (the copying mark says so); with no mark it has nothing to do.
func (rn *run) copyPending(ctx context.Context, arch, dir, rel string) error {
	if _, err := rn.s.store.Get(keyCopying + dir); err != nil {
		return nil
	}
	f, err := rn.s.store.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	db, err := alpm.ReadDB(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return fmt.Errorf("read the published %s: %w", rel, err)
	}
	rn.s.log.Info("copying the packages of a db published before them", "repo", rn.r.Key, "folder", dir)
	return rn.copied(ctx, arch, dir, slim(db))
}

// copying reports whether a folder of the repo has a db published before
// its packages were all copied.
func (rn *run) copying() bool {
	for _, arch := range rn.r.Arches {
		if _, err := rn.s.store.Get(keyCopying + rn.dir(arch)); err == nil {
			return true
		}
	}
	return false
}

// stage fetches rel into tmp/: conditionally when the tree holds the copy
// this sync published, so an unchanged db costs one 304. With parse set it
// must read as a database, or it counts as bad bytes.
func (rn *run) stage(ctx context.Context, arch, rel string, parse bool) (*staged, error) {
	if rn.follow != nil {
		return rn.stageShared(ctx, rel, parse)
	}
	file := rel[strings.LastIndexByte(rel, '/')+1:]
	req := upstream.Request{Repo: rn.r.Name, Arch: arch, File: file}
	if m, err := rn.s.store.Stat(rel); err == nil && rn.published(rel, m) {
		req.IfModifiedSince, req.IfNoneMatch = m.LastModified, m.ETag
	}
	st := &staged{rel: rel}
	err := rn.withMirrors(func(ms *upstream.MirrorSet) error {
		st.discard()
		st.unchanged, st.absent = false, false
		resp, err := ms.Fetch(ctx, req)
		switch {
		case errors.Is(err, upstream.ErrNotModified):
			st.unchanged = true
			return nil
		case errors.Is(err, upstream.ErrNotFound):
			st.absent = true
			return nil
		case err != nil:
			return err
		}
		defer resp.Body.Close()
		return rn.take(st, resp.Body, resp.Size, store.Meta{ETag: resp.ETag, LastModified: resp.LastModified}, resp.Mirror, parse)
	})
	if err != nil {
		st.discard()
		return nil, err
	}
	return st, nil
}

// stageShared stages rel as the manifest the sync follows names it: from
// the bucket, unless the tree holds that copy already.
func (rn *run) stageShared(ctx context.Context, rel string, parse bool) (*staged, error) {
	st := &staged{rel: rel}
	f, ok := rn.follow.Files[rel]
	if !ok {
		st.absent = true // as a 404 from upstream: the sync that asked it got one
		return st, nil
	}
	if m, err := rn.s.store.Stat(rel); err == nil && rn.published(rel, m) && m.SHA256 == f.SHA256 {
		st.unchanged = true
		return st, nil
	}
	body, err := rn.s.fetchShared(ctx, rn.r, f)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if err := rn.take(st, body, f.Size, store.Meta{ETag: f.ETag, LastModified: f.LastModified}, "the bucket", parse); err != nil {
		st.discard()
		return nil, err
	}
	return st, nil
}

// take reads a fetched db or signature into tmp/ as st's new copy: size
// bytes (-1: unknown), hashed, and with parse set read as a database.
// meta has the validators; from names the source for errors.
func (rn *run) take(st *staged, body io.Reader, size int64, meta store.Meta, from string, parse bool) error {
	var err error
	if st.tmp, err = rn.s.store.CreateTemp("sync-*"); err != nil {
		return err
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(st.tmp, sum), body)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", st.rel, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: %s from %s: %d bytes, Content-Length %d", errBadBytes, st.rel, from, n, size)
	}
	meta.SHA256 = hex.EncodeToString(sum.Sum(nil))
	st.meta = meta
	if !parse {
		return nil
	}
	if _, err := st.tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Only the .db's packages are downloaded; the .files db is parsed to
	// check it, without keeping its file lists.
	r := bufio.NewReaderSize(st.tmp, 64<<10)
	if strings.HasSuffix(st.rel, ".db") {
		db, err := alpm.ReadDB(r)
		if err != nil {
			return fmt.Errorf("%w: %s from %s: %v", errBadBytes, st.rel, from, err)
		}
		st.db = slim(db)
		return nil
	}
	comp, _, err := alpm.CheckDB(r)
	if err != nil {
		return fmt.Errorf("%w: %s from %s: %v", errBadBytes, st.rel, from, err)
	}
	st.db = &parsedDB{compression: comp}
	return nil
}

// parsedDB is what a sync keeps of a database while its packages
// download.
type parsedDB struct {
	pkgs        []pkgRef
	compression alpm.Compression
}

// pkgRef is what a sync needs of a package a db names.
type pkgRef struct {
	file   string // %FILENAME%
	size   int64  // %CSIZE%
	sha256 string // %SHA256SUM%
	pgpSig string // %PGPSIG%, base64
}

// expectations is what the db says each package file must be.
func (db *parsedDB) expectations() map[string]catalog.Expect {
	m := make(map[string]catalog.Expect, len(db.pkgs))
	for _, p := range db.pkgs {
		m[p.file] = catalog.Expect{Size: p.size, SHA256: p.sha256}
	}
	return m
}

// slim keeps of db only what the sync needs: a parsed alpm.Package is some 600 bytes before its
// strings, and those strings share the memory of the whole desc entry, so
// the kept ones are copied. For 15,000 packages that is about 2 MB
// instead of some 40 while the packages download.
func slim(db *alpm.DB) *parsedDB {
	out := &parsedDB{compression: db.Compression}
	out.pkgs = make([]pkgRef, len(db.Packages))
	for i, p := range db.Packages {
		out.pkgs[i] = pkgRef{file: strings.Clone(p.Filename), size: p.CSize, sha256: strings.Clone(p.SHA256Sum), pgpSig: strings.Clone(p.PGPSig)}
	}
	return out
}

// published reports whether the tree's copy of rel is the one a sync
// published: a db cached while the repo was in proxy mode is not, and
// must not stop a full check with a 304.
func (rn *run) published(rel string, m store.Meta) bool {
	v, err := rn.s.store.Get(keyDB + rel)
	return err == nil && m.SHA256 != "" && string(v) == m.SHA256
}

// publish moves a staged db and its signature into the tree: the
// signature first, then the db, each an atomic rename.
//
// Between the two renames (a fsync of the folder and a metadata write,
// well under a millisecond on local disks) a client could get a new .sig
// with the old .db. The larger window is the client's own: pacman fetches
// .db, then .db.sig in a second request, and a swap between its two
// requests mismatches them whatever the order of ours. Putting the db last
// keeps the crash case simple: until the .db is renamed, the tree still
// says "old", and the next sync redoes everything.
func (rn *run) publish(db, sig *staged) error {
	if db.tmp == nil {
		return nil
	}
	if sig != nil {
		switch {
		case sig.tmp != nil:
			if err := rn.commit(sig); err != nil {
				return err
			}
		case sig.absent:
			// The new db is unsigned: an old signature would only make
			// pacman reject it.
			if err := rn.s.store.Remove(sig.rel); err != nil {
				return err
			}
		}
	}
	if err := rn.commit(db); err != nil {
		return err
	}
	if err := rn.s.store.Put(keyDB+db.rel, []byte(db.meta.SHA256)); err != nil {
		return fmt.Errorf("record %s: %w", db.rel, err)
	}
	// repo-add's layout: {repo}.db.tar.gz beside {repo}.db (a link here).
	if ext := db.db.compression.Ext(); ext != "" {
		link := db.rel + ".tar" + ext
		if _, err := rn.s.store.Lstat(link); err != nil {
			if err := rn.s.store.Symlink(db.rel[strings.LastIndexByte(db.rel, '/')+1:], link); err != nil {
				return err
			}
		}
	}
	return nil
}

func (rn *run) commit(st *staged) error {
	if err := rn.s.store.Commit(st.tmp, st.rel, st.meta); err != nil {
		return err
	}
	st.tmp.Close()
	st.tmp = nil
	rn.s.catalog.Committed(st.rel)
	return nil
}

// want is one file a db names: a package, or its signature.
type want struct {
	file   string
	expect *catalog.Expect // nil for signatures: upstream's length is all we know
	sig    []byte          // a signature the db carries in %PGPSIG%
}

// Batching of the downloaded files (see download).
const (
	// flushFiles and flushBytes bound what a batch holds before a worker
	// flushes it early: what a kill -9 or a power loss leaves to hash
	// again, and the dirty pages one sync of the file system waits for.
	flushFiles = 4096
	flushBytes = 512 << 20
	// sigProbes is how many signatures a sync asks for before it decides
	// whether upstream publishes package signatures at all.
	sigProbes = 8
)

// download brings every file db names into dir, at most sync.concurrency
// at a time. The first failure stops the rest: what was verified stays in
// the tree for the next attempt.
//
// The files are committed through one store.Batch: placed in the tree
// without an fsync each, and made durable together (one sync of the file
// system, then their records in one badger batch) every flushFiles files
// and before download returns, so before the db that names them is
// published. A crash before that leaves files that no published db names
// and that have no record, which the next sync hashes (have) before
// trusting them: a power loss may have left them empty or torn, a kill -9
// left them whole, and neither is fetched again unless its bytes differ.
func (rn *run) download(ctx context.Context, arch, dir string, db *parsedDB) (err error) {
	rn.batch = rn.s.store.NewBatch()
	defer func() {
		// Also after a failure: what was verified is kept for the next
		// attempt, and a restart should find it recorded.
		if ferr := rn.batch.Close(); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}()
	// One listing of the folder instead of a stat per file: on a first
	// sync nearly every file is missing. A file that the proxy brings in
	// after the listing is found by the fetch, which looks again inside
	// its flight.
	entries, err := rn.s.store.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	onDisk := make(map[string]bool, len(entries))
	for _, e := range entries {
		onDisk[e.Name()] = true
	}
	var todo []want
	var total int64
	var newSigs, oldSigs []string // signatures to ask upstream for: of packages fetched now, of the others
	for _, p := range db.pkgs {
		e := catalog.Expect{Size: p.size, SHA256: p.sha256}
		ok := false
		if onDisk[p.file] {
			if ok, err = rn.have(dir+"/"+p.file, e); err != nil {
				return err
			}
		}
		if !ok {
			todo = append(todo, want{file: p.file, expect: &e})
			total += p.size
		}
		sigFile := p.file + ".sig"
		if onDisk[sigFile] {
			continue
		}
		if p.pgpSig != "" {
			// The db carries the signature: it is the .sig file's bytes,
			// so no request is needed.
			sig, err := base64.StdEncoding.DecodeString(p.pgpSig)
			if err == nil {
				todo = append(todo, want{file: sigFile, sig: sig})
				continue
			}
		}
		if _, err := rn.s.store.Get(keyNoSig + dir + "/" + sigFile); err == nil {
			continue
		}
		if ok {
			oldSigs = append(oldSigs, sigFile)
		} else {
			newSigs = append(newSigs, sigFile)
		}
	}
	rn.r.filesTotal.Add(int64(len(todo)))
	rn.r.bytesTotal.Add(total)

	sigs, err := rn.probeSigs(ctx, arch, dir, newSigs, oldSigs)
	if err != nil {
		return err
	}
	for _, f := range sigs {
		todo = append(todo, want{file: f})
	}
	rn.r.filesTotal.Add(int64(len(sigs)))
	return rn.getAll(ctx, arch, dir, todo)
}

// probeSigs decides which package signatures to ask upstream for, of
// those of the packages fetched now (fresh) and of the others (old): all
// of them if upstream publishes signatures, none if it does not.
//
// Arch publishes a .sig beside every package; other repos publish none,
// and asking for each would double the requests of their syncs and store
// a "none upstream" record per package. So the sync asks for a sample
// first (fresh packages first: a repo that starts signing signs those).
// If none is there the folder is marked unsigned (one key), and later
// syncs ask for a sample of their fresh packages only. A single signature
// found makes the folder signed again and every signature not known
// absent is asked for, so a signed repo gets every one. A repo that
// signs only some packages may have its signatures found late, a sample
// at a time; none is ever fetched wrongly.
func (rn *run) probeSigs(ctx context.Context, arch, dir string, fresh, old []string) ([]string, error) {
	_, err := rn.s.store.Get(keyUnsigned + dir)
	marked := err == nil
	all := slices.Concat(fresh, old)
	if rn.follow != nil {
		// The sync that asked upstream found out, and put every
		// signature there is in the bucket: ask for none, or for all.
		unsigned := slices.Contains(rn.follow.Unsigned, dir)
		switch {
		case unsigned && !marked:
			rn.batch.Put(keyUnsigned+dir, []byte("1"))
		case !unsigned && marked:
			if err := rn.s.store.Delete(keyUnsigned + dir); err != nil {
				return nil, err
			}
		}
		if unsigned {
			return nil, nil
		}
		return all, nil
	}
	candidates := all
	if marked {
		candidates = fresh
	}
	// Either way a prefix of all.
	sample := candidates[:min(len(candidates), sigProbes)]
	if len(sample) == 0 {
		return nil, nil
	}
	probes := make([]want, len(sample))
	for i, f := range sample {
		probes[i] = want{file: f}
	}
	rn.r.filesTotal.Add(int64(len(probes)))
	if err := rn.getAll(ctx, arch, dir, probes); err != nil {
		return nil, err
	}
	found := false
	for _, f := range sample {
		if _, ok := rn.s.store.Indexed(dir + "/" + f); ok {
			found = true
			break
		}
	}
	if !found {
		if !marked {
			rn.s.log.Info("upstream publishes no package signatures; asking for a sample at each sync", "repo", rn.r.Key, "folder", dir, "probes", len(sample))
			rn.batch.Put(keyUnsigned+dir, []byte("1"))
		}
		return nil, nil
	}
	if marked {
		rn.s.log.Info("upstream publishes package signatures again", "repo", rn.r.Key, "folder", dir)
		if err := rn.s.store.Delete(keyUnsigned + dir); err != nil {
			return nil, err
		}
	}
	return all[len(sample):], nil
}

// getAll gets every file of todo, at most sync.concurrency at a time; the
// first failure stops the rest.
func (rn *run) getAll(ctx context.Context, arch, dir string, todo []want) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rn.s.cfg.Sync.Concurrency)
	for _, w := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return rn.get(gctx, arch, dir, w) })
	}
	return g.Wait()
}

// get brings one wanted file into the tree.
func (rn *run) get(ctx context.Context, arch, dir string, w want) error {
	rel := dir + "/" + w.file
	if w.sig != nil {
		now := rn.s.now()
		if err := rn.batch.WriteFile(rel, w.sig, store.Meta{LastModified: now, FetchedAt: now}); err != nil {
			return err
		}
		rn.done(int64(len(w.sig)), true)
		return rn.flushEarly()
	}
	job := fetch.Job{Rel: rel, Repo: rn.r.Key, Request: upstream.Request{Repo: rn.r.Name, Arch: arch, File: w.file, Resumable: true},
		Batch: rn.batch}
	if rn.s.limit != nil {
		job.Limit = rn.s.limit
	}
	err := rn.withMirrors(func(ms *upstream.MirrorSet) error {
		job.Mirrors = ms
		// A reader of its own keeps the flight from being abandoned by a
		// proxy client that joins and leaves (cache.fill_on_abort false).
		fl, rd, leader := rn.s.fetcher.Join(ctx, job)
		defer rd.Close()
		if rn.s.joined != nil {
			rn.s.joined(rel)
		}
		select {
		case <-fl.Done():
		case <-ctx.Done():
			if leader {
				// The flight commits through this run's batch, which
				// closes once the download returns: it must end first,
				// or a later sync that joins it gets "batch closed".
				// Unread, it is abandoned (cache.fill_on_abort false);
				// else it lands, bounded as any fill is.
				rd.Close()
				<-fl.Done()
			}
			return ctx.Err()
		}
		if err := fl.Err(); err != nil {
			return err
		}
		if w.expect != nil {
			// A flight that began before this sync announced its db
			// (Expecting) was checked against the current db, or by
			// length only.
			ok, err := rn.have(rel, *w.expect)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: %s in the tree does not match the database", fetch.ErrVerify, rel)
			}
		}
		_, began := fl.Meta()
		rn.done(fl.Written(), leader && began)
		return nil
	})
	if w.expect == nil && errors.Is(err, upstream.ErrNotFound) {
		// Upstream has no signature for this package: remember it, so
		// that every later sync does not ask again.
		rn.batch.Put(keyNoSig+rel, []byte("1"))
		return nil
	}
	if err != nil {
		return err
	}
	return rn.flushEarly()
}

// flushEarly flushes the batch once it holds flushFiles or flushBytes,
// in one worker while the others go on downloading.
func (rn *run) flushEarly() error {
	if n, b := rn.batch.Pending(); n < flushFiles && b < flushBytes {
		return nil
	}
	if !rn.flushing.CompareAndSwap(false, true) {
		return nil
	}
	defer rn.flushing.Store(false)
	return rn.batch.Flush()
}

// done counts a finished file; fetched says the bytes came from upstream
// for this sync (not from a flight of the proxy's, nor from the tree).
func (rn *run) done(n int64, fetched bool) {
	rn.r.filesDone.Add(1)
	rn.r.bytesDone.Add(n)
	if fetched {
		rn.files.Add(1)
		rn.bytes.Add(n)
	}
}

// have reports whether the tree holds rel as the db describes it. A file
// committed by the store records its sha256; one without (placed by hand,
// or committed just before a crash) is hashed once. A file of the name
// but other content is removed, so that it is fetched again.
func (rn *run) have(rel string, e catalog.Expect) (bool, error) {
	m, err := rn.s.store.Stat(rel)
	if err != nil {
		return false, nil
	}
	if m.Size == e.Size && (e.SHA256 == "" || m.SHA256 == e.SHA256) {
		return true, nil
	}
	if m.Size == e.Size && m.SHA256 == "" {
		sum, err := rn.hash(rel)
		if err != nil {
			return false, err
		}
		if sum == e.SHA256 {
			m.SHA256 = sum
			return true, rn.s.store.SetMeta(rel, m)
		}
	}
	rn.s.log.Warn("file in the tree differs from the database; fetching it again", "repo", rn.r.Key, "file", rel)
	return false, rn.s.store.Remove(rel)
}

func (rn *run) hash(rel string) (string, error) {
	f, err := rn.s.store.Open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", rel, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// withMirrors runs fn with the repo's mirrors. When a mirror sent bad
// bytes the set cannot say which one did (a resumed body may even mix
// two), so fn runs again with each mirror alone: the ones that send bad
// bytes again are left out for the rest of this sync, and the file comes
// from the first that sends good bytes.
func (rn *run) withMirrors(fn func(ms *upstream.MirrorSet) error) error {
	ms, err := rn.goodSet()
	if err != nil {
		return err
	}
	err = fn(ms)
	if !isBadBytes(err) {
		return err
	}
	templates := rn.ms.Templates()
	if len(templates) == 1 {
		return err
	}
	for _, t := range templates {
		if rn.isBad(t) {
			continue
		}
		// Health is per mirror, shared with ms (upstream.Client.Mirrors).
		if err = fn(rn.ms.Subset([]string{t})); err == nil {
			return nil
		}
		if isBadBytes(err) {
			rn.markBad(t, err)
		}
	}
	return err
}

func (rn *run) goodSet() (*upstream.MirrorSet, error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if len(rn.bad) == 0 {
		return rn.ms, nil
	}
	if rn.good == nil {
		return nil, fmt.Errorf("every mirror of %s sent bad bytes", rn.r.Key)
	}
	return rn.good, nil
}

func (rn *run) isBad(t string) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.bad[t]
}

func (rn *run) markBad(t string, err error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.bad[t] {
		return
	}
	if rn.bad == nil {
		rn.bad = map[string]bool{}
	}
	rn.bad[t] = true
	rn.s.log.Warn("mirror sent bad bytes; not used for the rest of this sync", "repo", rn.r.Key, "mirror", t, "err", err)
	var rest []string
	for _, x := range rn.ms.Templates() {
		if !rn.bad[x] {
			rest = append(rest, x)
		}
	}
	rn.good = rn.ms.Subset(rest) // nil when rest is empty
}

// isRepoFile reports whether name is a package or a package signature:
// the only files pruning may delete.
func isRepoFile(name string) bool {
	return alpm.IsPackageFile(strings.TrimSuffix(name, ".sig"))
}
