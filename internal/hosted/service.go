package hosted

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/store"
)

// Options configures New. The tunables come from cfg.Hosted.
type Options struct {
	// QueueSize bounds the jobs waiting for a worker; beyond it an upload
	// gets ErrBusy. Default 4096.
	QueueSize int
	// SigningPassphrase unlocks the signing keys (main reads it from
	// MIRRORD_HOSTED_SIGNING_PASSPHRASE); nil for keys without one.
	SigningPassphrase []byte
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
	// Bucket, if set, is a cluster's shared storage: the publish state,
	// the uploads and the packages are kept there too (see Bucket), so
	// that the node that publishes next carries on where this one
	// stopped. New then rebuilds every database: the tree's, if any, may
	// be older than the index it finds.
	Bucket Bucket
	// Hold, with a Bucket, lasts while this node may publish: a
	// cluster's publisher holds a lease. Every write to the Bucket is
	// made only while it lasts and abandoned when it ends, so that a
	// publisher paused past its lease writes nothing once it wakes (the
	// next holder has read the records by then); and an upload is
	// acknowledged only if it still lasts once its job is recorded, so
	// that the next holder finds every job acknowledged. Default: never
	// ends.
	Hold context.Context
	// Token is the publisher's lease token, with a Bucket: the databases
	// it shares are refused once a publisher of a later token shared.
	Token uint64
	// Queued, with a Bucket, is told of each upload acknowledged: this
	// node's Checker may take its job at once.
	Queued func()
	// Checked, for NewChecker, is told of each result it put: this
	// node's publisher may commit it at once (Service.Checked).
	Checked func()
	// records, if set, keeps the publish state instead of the store's
	// key-value API or the Bucket: tests.
	records records
	// checkerBucket, if set, is the bucket of the Checker the tests run
	// beside a Service with a Bucket, instead of that one.
	checkerBucket Bucket
}

// Service is the publish pipeline of every hosted repo. Its methods are
// safe for concurrent use; Run drives the workers and builders.
type Service struct {
	tun     config.Hosted
	store   *store.Store     // the tree and the staging
	rec     records          // the publish state: the store's key-value API, or the bucket's
	bucket  Bucket           // a cluster's shared storage, or nil
	hold    context.Context  // Options.Hold, or Background
	token   uint64           // Options.Token
	cat     *catalog.Catalog // told of each db built
	log     *slog.Logger
	metrics *metrics
	trusted *pgp.Keyring // hosted.trusted_keys; nil: uploaded sigs are only checked for form

	repos  map[string]*repo // "distro/repo" -> its actor; fixed after New
	queue  chan Job         // acknowledged jobs for the workers; with a bucket, the Checkers take them
	queued func()           // Options.Queued, or nil
	// collectWake makes collect look for results at once (Checked).
	collectWake chan struct{}
	restart     []Job        // jobs found pending at start, queued by Run
	pending     atomic.Int64 // jobs queued or running, in every repo

	// jobs is every job recorded, by id: read at load, then kept with
	// each write, so that reading a job (WaitJob, the API's listings)
	// costs no request to the records. This Service is their one writer:
	// a single node's, or a cluster's one publisher.
	jobs   map[string]Job
	jobMu  stdsync.Mutex // guards jobs and serialises the writes of job records
	wakeMu stdsync.Mutex // guards wake only
	wake   chan struct{} // closed and replaced on every change a waiter may want
}

// New opens the publish state: the package index and pending jobs from the
// store, staging leftovers of uploads never acknowledged removed. Nothing
// runs until Run.
func New(cat *catalog.Catalog, st *store.Store, opts Options) (*Service, error) {
	s, err := newService(cat, st, opts)
	if err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// newService is a Service with its repos and keys, before load.
func newService(cat *catalog.Catalog, st *store.Store, opts Options) (*Service, error) {
	cfg := cat.Config()
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	s := &Service{
		tun:         cfg.Hosted,
		store:       st,
		rec:         st,
		cat:         cat,
		log:         opts.Logger,
		repos:       map[string]*repo{},
		queue:       make(chan Job, opts.QueueSize),
		jobs:        map[string]Job{},
		collectWake: make(chan struct{}, 1),
		queued:      opts.Queued,
		wake:        make(chan struct{}),
	}
	for _, cr := range cat.Repos() {
		if cr.Mode != config.ModeHosted {
			continue
		}
		r := newRepo(s, cr.Distro, cr.Name)
		for _, a := range cr.Arches {
			r.arches = append(r.arches, a)
			r.dirs[a] = cr.Dir(a)
			r.idx[a] = map[string]*entry{}
			r.retired[a] = map[string]time.Time{}
		}
		slices.Sort(r.arches)
		s.repos[cr.Key] = r
	}
	s.hold, s.token = opts.Hold, opts.Token
	if s.hold == nil {
		s.hold = context.Background()
	}
	if opts.Bucket != nil {
		s.bucket, s.rec = opts.Bucket, bucketRecords{objs: opts.Bucket, prefix: bucketPrefix, hold: s.hold}
	}
	if opts.records != nil {
		s.rec = opts.records
	}
	s.metrics = newMetrics(opts.Registerer, s)
	if err := s.loadKeys(cfg, opts.SigningPassphrase); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the index, the dirty marks and retired files of every hosted
// repo, requeues the jobs acknowledged before a stop or crash, and removes
// staged files that belong to no such job.
func (s *Service) load() error {
	err := s.rec.Scan(idxPrefix, func(key string, val []byte) error {
		r, arch, name, ok := s.splitKey(key)
		if !ok || r.idx[arch] == nil {
			return nil // a repo or arch no longer configured
		}
		e := &entry{}
		if err := json.Unmarshal(val, e); err != nil {
			s.log.Warn("dropping unreadable index entry", "key", key, "err", err)
			return nil
		}
		if e.Name != name || !plainFile(e.Filename) {
			// The entry's file is removed from the tree when it is
			// retired: a name with a "/" or ".." would reach outside
			// the repo's folder.
			s.log.Warn("dropping an index entry not of its key or with a bad file name", "key", key, "file", e.Filename)
			return nil
		}
		r.idx[arch][name] = e
		if e.SignedBy != "" {
			r.signedBy.Store(arch+"/"+e.Filename, e.SignedBy)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hosted: load index: %w", err)
	}
	err = s.rec.Scan(gcPrefix, func(key string, val []byte) error {
		r, arch, file, ok := s.splitKey(key)
		if !ok || r.retired[arch] == nil {
			return nil
		}
		if !plainFile(file) {
			s.log.Warn("dropping a retired file with a bad name", "key", key)
			return nil
		}
		var at time.Time
		if err := at.UnmarshalText(val); err == nil {
			r.retired[arch][file] = at
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hosted: load retired files: %w", err)
	}
	for _, r := range s.repos {
		for _, a := range r.arches {
			_, derr := s.rec.Get(dirtyKey(r.key, a))
			_, lerr := s.store.Lstat(r.dirs[a] + "/" + r.name + ".db")
			if lerr != nil && derr != nil {
				// Never built (a repo new to the config): build it now,
				// before the daemon serves, so that pacman's first -Sy
				// never meets a 404 for a repo the config names.
				lerr = s.build(r.key, r.dirs[a], r.name, r.signer, r.snapshot(a))
				if lerr != nil {
					s.log.Warn("build database", "repo", r.key, "arch", a, "err", lerr)
				}
			}
			if derr == nil || lerr != nil || !r.sigCurrent(a) || s.bucket != nil {
				// Changed before a crash, not built, signed by another
				// key than the config's, or in a cluster (another node
				// may have published since this tree's build): build at
				// once.
				r.dirty[a] = true
				r.since[a] = time.Time{}
			}
		}
		r.metrics()
		r.settle()
	}

	keep := map[string]bool{}
	var orphans, unpublished []Job
	err = s.rec.Scan(jobPrefix, func(id string, val []byte) error {
		var j Job
		if err := json.Unmarshal(val, &j); err != nil {
			s.log.Warn("dropping unreadable job", "job", id, "err", err)
			return nil
		}
		if j.ID != id || !validJobID(id) {
			s.log.Warn("dropping a job not of its key", "job", id, "id", j.ID)
			return nil
		}
		s.jobs[id] = j
		r := s.repos[j.Distro+"/"+j.Repo]
		if j.Finished() {
			if j.Status == Done && j.PublishedAt == nil && r != nil && j.Package != nil {
				unpublished = append(unpublished, j)
			}
			return nil
		}
		if r == nil {
			j.Status, j.Result, j.Error = Failed, ResultError, j.Distro+"/"+j.Repo+" is no longer a hosted repo"
			orphans = append(orphans, j)
			return nil
		}
		keep[j.ID] = true
		j.Status = Queued
		s.restart = append(s.restart, j)
		s.pending.Add(1)
		r.pending.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("hosted: load jobs: %w", err)
	}
	for _, j := range orphans {
		if err := s.putJob(j); err != nil {
			return fmt.Errorf("hosted: %w", err)
		}
	}
	// A job done before the stop whose dbs were not all rebuilt since
	// (the dirty mark says so) waits for the builds that come first at
	// start; one whose dbs were is published.
	for _, j := range unpublished {
		r := s.repos[j.Distro+"/"+j.Repo]
		var arches []string
		for _, a := range j.Package.Arches {
			if r.dirty[a] {
				arches = append(arches, a)
			}
		}
		if len(arches) > 0 {
			r.await(j.ID, arches)
		} else if err := s.published(j.ID, s.now()); err != nil {
			return fmt.Errorf("hosted: %w", err)
		}
	}
	staged, err := s.store.ListStaged()
	if err != nil {
		return fmt.Errorf("hosted: %w", err)
	}
	for _, name := range staged {
		id, _, _ := strings.Cut(name, ".")
		if !keep[id] {
			s.store.RemoveStaged(name) // an upload never acknowledged, or one whose job is over
		}
	}
	if s.bucket != nil {
		if staged := s.sweepStaged(keep); staged != nil {
			// A pending job without its upload in the bucket is never
			// checked: it fails now rather than wait for ever.
			for _, j := range s.restart {
				if !staged[j.ID] {
					s.end(s.repos[j.Distro+"/"+j.Repo], j, "", errors.New("its upload is not in the bucket"))
				}
			}
		}
	}
	if len(s.restart) > 0 {
		s.log.Info("resuming publish jobs", "jobs", len(s.restart))
	}
	return nil
}

// plainFile reports whether name, read from the records, is a file name
// a publish could have given (upload checks it with unservable): the
// records are the node's own on one node, but a cluster's bucket may be
// written by others, and these names become paths in the tree.
func plainFile(name string) bool {
	_, bad := unservable(name)
	return name != "" && name != "." && name != ".." && !bad
}

// splitKey splits "distro/repo/arch/name" of the index and gc keys.
func (s *Service) splitKey(key string) (*repo, string, string, bool) {
	parts := strings.SplitN(key, "/", 4)
	if len(parts) != 4 {
		return nil, "", "", false
	}
	r := s.repos[parts[0]+"/"+parts[1]]
	return r, parts[2], parts[3], r != nil
}

// Run starts the workers (with a bucket: the commits of the Checkers'
// results) and the per-repo builders and returns when ctx ends, after the
// workers finished their current job and every dirty database was built.
// Jobs still queued then resume at the next start.
func (s *Service) Run(ctx context.Context) error {
	actx, stopActors := context.WithCancel(context.WithoutCancel(ctx))
	defer stopActors()
	var actors, workers stdsync.WaitGroup
	for _, r := range s.repos {
		actors.Go(func() { r.run(actx) })
	}
	workers.Go(func() { s.pruneJobs(ctx) })
	if s.bucket != nil {
		// The Checkers of every node check the jobs: this node commits
		// what they found.
		workers.Go(func() { s.collect(ctx) })
	} else {
		for range s.tun.Workers {
			workers.Go(func() { s.work(ctx) })
		}
		workers.Go(func() {
			for _, j := range s.restart {
				select {
				case s.queue <- j:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	<-ctx.Done()
	workers.Wait()
	stopActors()
	actors.Wait()
	return nil
}

// pruneJobs forgets finished jobs after hosted.retention (at least an
// hour, so that a client can read how its job ended) until ctx ends.
func (s *Service) pruneJobs(ctx context.Context) {
	keep := max(s.tun.Retention, time.Hour)
	t := time.NewTicker(min(keep/4, 10*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var old []string
		cutoff := time.Now().Add(-keep)
		s.jobMu.Lock()
		for id, j := range s.jobs {
			if j.Finished() && j.Updated.Before(cutoff) {
				old = append(old, id)
			}
		}
		s.jobMu.Unlock()
		for _, id := range old {
			if err := s.dropJob(id, s.rec.Delete); err != nil {
				s.log.Warn("prune finished jobs", "err", err)
				break
			}
		}
	}
}

// Pending is the number of jobs queued or running.
func (s *Service) Pending() int { return int(s.pending.Load()) }

// WaitIdle returns once no job is pending and no database is waiting to
// be built or being built, or when ctx ends.
func (s *Service) WaitIdle(ctx context.Context) error {
	for {
		ch := s.changed()
		idle := s.pending.Load() == 0
		for _, r := range s.repos {
			idle = idle && r.unsettled.Load() == 0
		}
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// changed returns a channel closed at the next notify.
func (s *Service) changed() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

// notify wakes every waiter of changed.
func (s *Service) notify() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

func (s *Service) now() time.Time { return time.Now() }

// repoOf returns the actor of a hosted repo, or ErrNotFound.
func (s *Service) repoOf(distro, name string) (*repo, error) {
	r := s.repos[distro+"/"+name]
	if r == nil {
		return nil, fmt.Errorf("no hosted repo %s/%s: %w", distro, name, ErrNotFound)
	}
	return r, nil
}
