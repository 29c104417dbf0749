package hosted

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/store"
)

// Keys in the store: "hosted/idx/{distro}/{repo}/{arch}/{name}" is a
// published package (an entry), "hosted/dirty/{distro}/{repo}/{arch}" marks
// a db that lags its index, "hosted/gc/{distro}/{repo}/{arch}/{file}" a
// replaced or deleted file and when it may be removed.
const (
	idxPrefix   = "hosted/idx/"
	dirtyPrefix = "hosted/dirty/"
	gcPrefix    = "hosted/gc/"
)

func dirtyKey(repo, arch string) string { return dirtyPrefix + repo + "/" + arch }

// entry is one package of a repo/arch index: what its db entry says, and
// the job that published it (so that a job run again after a crash finds
// its own work done instead of "not newer").
type entry struct {
	alpm.Package
	Job string `json:",omitempty"`
	// SignedBy is the fingerprint of the key whose signature of the file
	// was verified or made at publish; "" if none was.
	SignedBy string `json:",omitempty"`
}

// repo is the actor of one hosted repo: its goroutine (run) alone reads
// and writes the fields below the line, so publishes of one name are
// ordered without a lock. The atomics are written by uploads and workers.
type repo struct {
	s            *Service
	distro, name string
	key          string   // "distro/repo", the metrics label
	arches       []string // sorted
	dirs         map[string]string
	signer       *pgp.Signer // signs the dbs (and unsigned uploads); nil: unsigned

	in   chan any      // *commitReq, *deleteReq
	kick chan struct{} // a job ended: look at the schedule again
	done chan struct{} // closed when run returns

	pending      atomic.Int64 // jobs of this repo queued or running
	lastActivity atomic.Int64 // unix ns of the last upload or change
	unsettled    atomic.Int64 // arches dirty or building, for WaitIdle
	signedBy     stdsync.Map  // arch+"/"+file -> fingerprint; written by run, read by SignedBy

	// ---- owned by run ----
	idx      map[string]map[string]*entry    // arch -> name -> entry
	dirty    map[string]bool                 // arch's db lags its index
	since    map[string]time.Time            // first change since the last build
	building map[string]bool                 // a build goroutine runs
	retired  map[string]map[string]time.Time // arch -> file -> removable after
	unbuilt  map[string][]string             // arch -> jobs published in its index since its last build started
	awaiting map[string]int                  // job -> arches whose served db does not list it yet
}

func newRepo(s *Service, distro, name string) *repo {
	return &repo{
		s: s, distro: distro, name: name, key: distro + "/" + name,
		dirs: map[string]string{}, in: make(chan any), kick: make(chan struct{}, 1), done: make(chan struct{}),
		idx: map[string]map[string]*entry{}, dirty: map[string]bool{}, since: map[string]time.Time{},
		building: map[string]bool{}, retired: map[string]map[string]time.Time{},
		unbuilt: map[string][]string{}, awaiting: map[string]int{},
	}
}

// commitReq asks the actor to publish a checked package: files and sigs
// are store temp files (fsynced) per target arch.
type commitReq struct {
	job       string
	pkg       *alpm.Package
	force     bool
	files     map[string]*os.File
	sigs      map[string]*os.File
	signedBy  string   // fingerprint of the verified signer, "" if none
	committed []string // temp names the actor moved into the tree
	reply     chan error
}

type deleteReq struct {
	arch, name string
	reply      chan error
}

type buildResult struct {
	arch string
	jobs []string // whose packages the build's snapshot holds (repo.unbuilt)
	err  error
}

// do hands a request to the actor and waits for its answer. Once taken,
// a request is carried out even if ctx ends: the answer is then dropped.
func (r *repo) do(ctx context.Context, req any) error {
	var reply chan error
	switch q := req.(type) {
	case *commitReq:
		reply = q.reply
	case *deleteReq:
		reply = q.reply
	}
	select {
	case r.in <- req:
	case <-r.done:
		return fmt.Errorf("%s: shutting down", r.key)
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-reply
}

// poke wakes the actor to look at its schedule; it never blocks.
func (r *repo) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run is the actor loop. It returns when ctx ends, after building what is
// dirty, so a clean stop leaves every db current.
func (r *repo) run(ctx context.Context) {
	defer close(r.done)
	built := make(chan buildResult, len(r.arches)) // a build never waits to report
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(sweepInterval(r.s.tun.Retention))
	defer sweep.Stop()
	for {
		if next := r.schedule(built); !next.IsZero() {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			running := 0
			for _, a := range r.arches {
				if r.building[a] {
					running++
				}
			}
			for range running {
				r.finish(<-built)
			}
			for _, a := range r.arches {
				if r.dirty[a] {
					r.startBuild(a, built)
					r.finish(<-built)
				}
			}
			r.settle()
			return
		case m := <-r.in:
			switch q := m.(type) {
			case *commitReq:
				q.reply <- r.commit(q)
			case *deleteReq:
				q.reply <- r.remove(q.arch, q.name)
			}
		case b := <-built:
			r.finish(b)
		case <-r.kick:
		case <-timer.C:
		case <-sweep.C:
			r.sweep()
		}
	}
}

func sweepInterval(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Second), 5*time.Minute)
}

// commit publishes q.pkg in every arch of q.files, if it is newer than
// what each holds (or forced).
func (r *repo) commit(q *commitReq) error {
	p := q.pkg
	arches := make([]string, 0, len(q.files))
	for a := range q.files {
		arches = append(arches, a)
	}
	slices.Sort(arches)
	for _, a := range arches {
		cur := r.idx[a][p.Name]
		if cur == nil || q.force || (cur.Job == q.job && cur.SHA256Sum == p.SHA256Sum) {
			continue
		}
		if alpm.Vercmp(p.Version, cur.Version) <= 0 {
			return fmt.Errorf("%w: %s %s is published in %s/%s; %s is not newer (publish with force to replace it)",
				ErrOlderVersion, p.Name, cur.Version, r.key, a, p.Version)
		}
	}
	for _, a := range arches {
		if err := r.markDirty(a); err != nil {
			return err
		}
		rel := path.Join(r.dirs[a], p.Filename)
		f := q.files[a]
		if err := r.s.store.Commit(f, rel, store.Meta{SHA256: p.SHA256Sum}); err != nil {
			return err
		}
		q.committed = append(q.committed, f.Name())
		if sf := q.sigs[a]; sf != nil {
			if err := r.s.store.Commit(sf, rel+".sig", store.Meta{}); err != nil {
				return err
			}
			q.committed = append(q.committed, sf.Name())
		} else if _, err := r.s.store.Stat(rel + ".sig"); err == nil || hadSig(r.idx[a][p.Name], p.Filename) {
			// A forced republish without the signature the old one had
			// (in the bucket too, when another node published that one).
			if err := r.s.removeFile(rel + ".sig"); err != nil {
				return err
			}
		}
		if r.s.bucket != nil {
			// Every node serves the packages, from the bucket: there
			// before the index (and so a db) names them.
			if err := r.s.putPackage(q.job, rel); err != nil {
				return err
			}
			if q.sigs[a] != nil {
				if err := r.s.putTree(rel + ".sig"); err != nil {
					return err
				}
			}
		}
		e := &entry{Package: *p, Job: q.job, SignedBy: q.signedBy}
		val, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := r.s.rec.Put(r.idxKey(a, p.Name), val); err != nil {
			return fmt.Errorf("index %s: %w", rel, err)
		}
		old := r.idx[a][p.Name]
		r.idx[a][p.Name] = e
		if q.signedBy != "" {
			r.signedBy.Store(a+"/"+p.Filename, q.signedBy)
		} else {
			r.signedBy.Delete(a + "/" + p.Filename)
		}
		if err := r.unretire(a, p.Filename); err != nil {
			return err
		}
		if old != nil && old.Filename != p.Filename {
			if err := r.retire(a, old.Filename); err != nil {
				return err
			}
		}
	}
	r.await(q.job, arches)
	r.lastActivity.Store(time.Now().UnixNano())
	r.metrics()
	r.settle() // before the reply: a waiter must see the db as pending
	return nil
}

// hadSig reports whether cur, the index entry a publish replaces, is a
// signed package of that file name: its signature is the tree's and the
// bucket's, and must go with it.
func hadSig(cur *entry, file string) bool {
	return cur != nil && cur.Filename == file && cur.PGPSig != ""
}

// await notes that job's package is in the index of arches and waits for
// their next builds: once every one is in place the job is published
// (Job.PublishedAt).
func (r *repo) await(job string, arches []string) {
	for _, a := range arches {
		r.unbuilt[a] = append(r.unbuilt[a], job)
	}
	r.awaiting[job] += len(arches)
}

// remove drops name from arch's index; an any package goes from every
// arch that lists the same file, as it was published to all of them.
func (r *repo) remove(arch, name string) error {
	e := r.idx[arch][name]
	if e == nil {
		return fmt.Errorf("package %s in %s/%s: %w", name, r.key, arch, ErrNotFound)
	}
	arches := []string{arch}
	if e.Arch == "any" {
		arches = arches[:0]
		for _, a := range r.arches {
			if o := r.idx[a][name]; o != nil && o.Filename == e.Filename {
				arches = append(arches, a)
			}
		}
	}
	for _, a := range arches {
		if err := r.markDirty(a); err != nil {
			return err
		}
		if err := r.s.rec.Delete(r.idxKey(a, name)); err != nil {
			return fmt.Errorf("unindex %s: %w", name, err)
		}
		delete(r.idx[a], name)
		if err := r.retire(a, e.Filename); err != nil {
			return err
		}
	}
	r.lastActivity.Store(time.Now().UnixNano())
	r.metrics()
	r.settle() // before the reply: a waiter must see the db as pending
	return nil
}

func (r *repo) idxKey(arch, name string) string { return idxPrefix + r.key + "/" + arch + "/" + name }
func (r *repo) gcKey(arch, file string) string  { return gcPrefix + r.key + "/" + arch + "/" + file }

// markDirty records, before the index changes, that arch's db must be
// rebuilt, so that a crash in between still leads to a rebuild.
func (r *repo) markDirty(arch string) error {
	if r.dirty[arch] {
		return nil
	}
	if err := r.s.rec.Put(dirtyKey(r.key, arch), []byte{1}); err != nil {
		return fmt.Errorf("mark %s/%s dirty: %w", r.key, arch, err)
	}
	r.dirty[arch] = true
	r.since[arch] = time.Now()
	return nil
}

// retire schedules a file no longer in the index for removal after
// hosted.retention: clients holding the previous db may still ask for it.
func (r *repo) retire(arch, file string) error {
	at := time.Now().Add(r.s.tun.Retention)
	val, _ := at.MarshalText()
	if err := r.s.rec.Put(r.gcKey(arch, file), val); err != nil {
		return fmt.Errorf("retire %s: %w", file, err)
	}
	r.retired[arch][file] = at
	return nil
}

// unretire keeps a file that is published again from its removal.
func (r *repo) unretire(arch, file string) error {
	if _, ok := r.retired[arch][file]; !ok {
		return nil
	}
	if err := r.s.rec.Delete(r.gcKey(arch, file)); err != nil {
		return fmt.Errorf("unretire %s: %w", file, err)
	}
	delete(r.retired[arch], file)
	return nil
}

// sweep removes retired files whose time has come, in arches whose db is
// current (a db still naming the file is never left without it).
func (r *repo) sweep() {
	now := time.Now()
	for _, a := range r.arches {
		if r.dirty[a] || r.building[a] {
			continue
		}
		for file, at := range r.retired[a] {
			if now.Before(at) {
				continue
			}
			rel := path.Join(r.dirs[a], file)
			if err := r.s.removeFile(rel); err != nil {
				r.s.log.Warn("remove retired file", "file", rel, "err", err)
				continue
			}
			r.s.removeFile(rel + ".sig")
			r.signedBy.Delete(a + "/" + file)
			if err := r.s.rec.Delete(r.gcKey(a, file)); err != nil {
				r.s.log.Warn("forget retired file", "file", rel, "err", err)
				continue
			}
			delete(r.retired[a], file)
		}
	}
}

// schedule starts the builds that are due and returns when to look again
// (zero: nothing waits). A dirty db is built once the repo has no job
// pending and no upload or change came for hosted.debounce, and at the
// latest hosted.max_delay after its first change.
func (r *repo) schedule(built chan<- buildResult) time.Time {
	now := time.Now()
	var next time.Time
	idle := r.pending.Load() == 0
	quiet := time.Unix(0, r.lastActivity.Load()).Add(r.s.tun.Debounce)
	for _, a := range r.arches {
		if !r.dirty[a] || r.building[a] {
			continue
		}
		due := r.since[a].Add(r.s.tun.MaxDelay)
		if idle && quiet.Before(due) {
			due = quiet
		}
		if !now.Before(due) {
			r.startBuild(a, built)
			continue
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	r.settle()
	return next
}

// settle publishes how many arches are dirty or building, for WaitIdle.
func (r *repo) settle() {
	var n int64
	for _, a := range r.arches {
		if r.dirty[a] || r.building[a] {
			n++
		}
	}
	if r.unsettled.Swap(n) != n {
		r.s.notify()
	}
}

// startBuild hands a snapshot of arch's index to a build goroutine. The
// entries are never modified once indexed (a change replaces them), so
// the snapshot needs no copy of the packages.
func (r *repo) startBuild(arch string, built chan<- buildResult) {
	pkgs, jobs := r.snapshot(arch), r.unbuilt[arch]
	delete(r.unbuilt, arch)
	r.dirty[arch] = false
	r.building[arch] = true
	go func() {
		built <- buildResult{arch: arch, jobs: jobs, err: r.s.build(r.key, r.dirs[arch], r.name, r.signer, pkgs)}
	}()
}

// snapshot returns the packages of arch's index, for a build.
func (r *repo) snapshot(arch string) []*alpm.Package {
	pkgs := make([]*alpm.Package, 0, len(r.idx[arch]))
	for _, e := range r.idx[arch] {
		pkgs = append(pkgs, &e.Package)
	}
	return pkgs
}

// finish records the end of a build: a failed one is retried as a change
// (its jobs wait for that one), a good one publishes the jobs whose last
// db it was and, with no change since, clears the dirty mark.
func (r *repo) finish(b buildResult) {
	r.building[b.arch] = false
	if b.err != nil {
		r.s.log.Error("build database", "repo", r.key, "arch", b.arch, "err", b.err)
		r.dirty[b.arch] = true
		r.since[b.arch] = time.Now()
		r.unbuilt[b.arch] = append(b.jobs, r.unbuilt[b.arch]...)
		r.settle()
		return
	}
	now := r.s.now()
	for _, job := range b.jobs {
		if r.awaiting[job]--; r.awaiting[job] > 0 {
			continue
		}
		delete(r.awaiting, job)
		if err := r.s.published(job, now); err != nil {
			r.s.log.Error("record job published", "repo", r.key, "job", job, "err", err)
		}
	}
	if !r.dirty[b.arch] {
		if err := r.s.rec.Delete(dirtyKey(r.key, b.arch)); err != nil {
			r.s.log.Warn("clear dirty mark", "repo", r.key, "arch", b.arch, "err", err)
		}
		r.sweep()
	}
	r.settle()
}

// metrics sets the package counts of every arch.
func (r *repo) metrics() {
	for _, a := range r.arches {
		r.s.metrics.packages.WithLabelValues(r.key, a).Set(float64(len(r.idx[a])))
	}
}
