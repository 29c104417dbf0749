package hosted

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// In a cluster a job is checked by whichever node's workers claim it,
// and committed by the publisher (docs/CLUSTER.md). The check (precheck,
// parse of the whole archive with its file list, signature) is the
// costly part of a publish: spread over the nodes, a burst of uploads is
// parsed by all of them. A job waits in the bucket as its staged upload;
// a worker claims it with a conditional write, checks it, and leaves the
// result beside it; the publisher commits the result. Keys:
const (
	bucketClaims  = bucketPrefix + "claims/"  // + job id: who checks it, until when
	bucketChecked = bucketPrefix + "checked/" // + job id: the check's result
)

// claimTTL is how long a claim holds without renewal: a node that dies
// mid-check delays its job by about this long. Renewed every third of
// it while the check runs.
const claimTTL = 15 * time.Second

// claimSkew is how far past its expiry, by the reader's clock, a claim is
// still respected: the nodes' clocks agree within it.
const claimSkew = 2 * time.Second

// maxChecked bounds what is read of a check's result: a package's file
// list may have hosted.max_files_per_package entries (200,000 by
// default, some 10 MB of JSON).
const maxChecked = 256 << 20

// checkEvery is how often a Checker lists the jobs that wait, and the
// publisher the results: a job another node's workers may take waits up
// to this long, a result as long.
const checkEvery = time.Second

// claim is the record under bucketClaims.
type claim struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// checkResult is the record under bucketChecked: what a check found, or
// why the job fails.
type checkResult struct {
	Holder  string   `json:"holder"` // the node that checked
	Result  string   `json:"result"` // ResultDone, or the failure's
	Error   string   `json:"error,omitempty"`
	Checked *checked `json:"checked,omitempty"` // with ResultDone
}

// Checker runs the checks of a cluster's hosted jobs on one node: its
// workers claim the jobs that wait in the bucket, whichever node took
// their uploads, check each as the publisher would, and put the result
// in the bucket for the publisher to commit. A check that dies with its
// node loses nothing: the claim expires and another node checks the job
// again; two checks of one job leave one result (the first put).
type Checker struct {
	s       *Service // its repos, keys and limits: never loaded, never run
	holder  string
	checked func() // told of each result put (Options.Checked)
	wake    chan struct{}
	log     *slog.Logger
	checks  *prometheus.CounterVec

	mu        stdsync.Mutex
	busy      map[string]bool      // job ids this node's workers have
	elsewhere map[string]time.Time // job id -> not to be looked at here before
	failures  map[string]int       // job id -> checks here that failed for no fault of the upload
}

// checkAttempts is how many times a node checks a job that fails for no
// fault of the upload (the bucket, the disk) before it fails the job:
// another node, or this one at its next look, may well succeed.
const checkAttempts = 3

// NewChecker is the Checker of one node of a cluster: holder names it in
// its claims; opts.Bucket is required, opts.Registerer takes its metric.
func NewChecker(cat *catalog.Catalog, st *store.Store, holder string, opts Options) (*Checker, error) {
	if opts.Bucket == nil {
		return nil, errors.New("hosted: a Checker needs a bucket")
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	opts.Registerer = prometheus.NewRegistry() // the Service's own: it publishes nothing
	opts.Hold = nil                            // a check is no publisher's: no lease bounds it
	s, err := newService(cat, st, opts)
	if err != nil {
		return nil, err
	}
	c := &Checker{s: s, holder: holder, checked: opts.Checked, wake: make(chan struct{}, 1), log: s.log,
		busy: map[string]bool{}, elsewhere: map[string]time.Time{}, failures: map[string]int{},
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrord_publish_checks_total",
			Help: "Publish jobs this node's workers checked (in a cluster, for the publisher to commit: the results it put), by result.",
		}, []string{"result"})}
	for _, r := range results {
		c.checks.WithLabelValues(r)
	}
	if err := reg.Register(c.checks); err != nil {
		return nil, err
	}
	return c, nil
}

// Poke makes the Checker look for waiting jobs now: one was just
// acknowledged on this node.
func (c *Checker) Poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run checks jobs with hosted.workers workers until ctx ends; a check
// under way then runs to its end.
func (c *Checker) Run(ctx context.Context) {
	jobs := make(chan string) // unbuffered: offered only to an idle worker
	var workers stdsync.WaitGroup
	for range c.s.tun.Workers {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-jobs:
					worked := c.check(ctx, id)
					c.mu.Lock()
					delete(c.busy, id)
					c.mu.Unlock()
					if worked {
						c.Poke() // a worker is free: look again at once
					}
				}
			}
		})
	}
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		c.offer(ctx, jobs)
		select {
		case <-ctx.Done():
			workers.Wait()
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

// offer lists the waiting jobs, oldest first, and hands each to an idle
// worker until none is idle.
func (c *Checker) offer(ctx context.Context, jobs chan<- string) {
	lctx, cancel := context.WithTimeout(ctx, recordTimeout)
	keys, err := c.s.bucket.List(lctx, bucketStaging)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("list the jobs waiting in the bucket", "err", err)
		}
		return
	}
	now := time.Now()
	listed := map[string]bool{}
	for _, key := range keys {
		id, ok := strings.CutSuffix(strings.TrimPrefix(key, bucketStaging), ".pkg")
		if !ok || !validJobID(id) {
			continue
		}
		listed[id] = true
		c.mu.Lock()
		skip := c.busy[id] || now.Before(c.elsewhere[id])
		if !skip {
			c.busy[id] = true
		}
		c.mu.Unlock()
		if skip {
			continue
		}
		select {
		case jobs <- id:
		default:
			c.mu.Lock()
			delete(c.busy, id)
			c.mu.Unlock()
			return // every worker is busy: other nodes' take the rest
		}
	}
	c.mu.Lock()
	for id := range c.elsewhere {
		if !listed[id] {
			delete(c.elsewhere, id) // over
		}
	}
	for id := range c.failures {
		if !listed[id] {
			delete(c.failures, id)
		}
	}
	c.mu.Unlock()
}

// check claims job id and, if this node has the claim, checks the job
// and puts the result; worked reports whether it did. A job another node
// claimed is not looked at again here until that claim would expire.
func (c *Checker) check(ctx context.Context, id string) (worked bool) {
	b := c.s.bucket
	if _, err := b.Stat(ctx, bucketChecked+id); err == nil {
		c.later(id, claimTTL) // checked, waiting for the publisher
		return false
	}
	version, ok, until, err := c.claim(ctx, id, "")
	if err != nil {
		c.log.Warn("claim a publish job", "job", id, "err", err)
	}
	if !ok {
		c.later(id, time.Until(until))
		return false
	}
	val, err := c.s.rec.Get(jobPrefix + id)
	if errors.Is(err, store.ErrNotFound) {
		// Staged, not recorded yet (or never to be: the sweep at the next
		// takeover deletes it): let it go until the next look.
		c.unclaim(id, version)
		return false
	}
	var j Job
	if err == nil {
		err = json.Unmarshal(val, &j)
	}
	if err != nil || j.ID != id || j.Finished() {
		if err != nil {
			c.log.Warn("read a publish job", "job", id, "err", err)
		}
		c.unclaim(id, version)
		return false
	}
	cctx, stop := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() { defer close(renewed); c.renew(cctx, id, version) }()
	res := c.run(j)
	stop()
	<-renewed
	if res.Result == ResultError {
		c.mu.Lock()
		c.failures[id]++
		again := c.failures[id] < checkAttempts
		c.mu.Unlock()
		if again {
			c.log.Warn("check of a publish job failed: tried again", "job", id, "err", res.Error)
			c.unclaim(id, version)
			return true
		}
	}
	c.mu.Lock()
	delete(c.failures, id)
	c.mu.Unlock()
	data, err := json.Marshal(res)
	if err == nil {
		pctx, cancel := context.WithTimeout(context.Background(), transferTimeout)
		err = b.PutIfAbsent(pctx, bucketChecked+id, bytes.NewReader(data), store.BytesMeta(data))
		cancel()
	}
	if errors.Is(err, store.ErrExists) {
		// Another node's check, after this one's claim expired: its
		// result, the same, is the one committed.
		c.log.Info("checked a publish job another node checked first", "job", id)
		return true
	}
	if err != nil {
		c.log.Warn("put the result of a check", "job", id, "err", err)
		return true
	}
	c.checks.WithLabelValues(res.Result).Inc()
	c.log.Info("checked a publish job", "job", id, "repo", j.Distro+"/"+j.Repo, "result", res.Result)
	if c.checked != nil {
		c.checked()
	}
	return true
}

// later keeps job id from this node's workers for d.
func (c *Checker) later(id string, d time.Duration) {
	c.mu.Lock()
	c.elsewhere[id] = time.Now().Add(d)
	c.mu.Unlock()
}

// run checks j here: its upload from this node's staging if it is there
// (this node took it), else from the bucket, removed again after.
func (c *Checker) run(j Job) checkResult {
	res := checkResult{Holder: c.holder, Result: ResultDone}
	r := c.s.repos[j.Distro+"/"+j.Repo]
	if r == nil {
		res.Result, res.Error = ResultError, j.Distro+"/"+j.Repo+" is no longer a hosted repo"
		return res
	}
	var local []string
	for _, ext := range []string{".pkg", ".sig"} {
		if f, err := c.s.store.OpenStaged(stagedName(j.ID, ext)); err == nil {
			f.Close()
			local = append(local, ext)
		}
	}
	chk, tmp, err := c.s.check(r, &j)
	if tmp != nil {
		tmp.Close()
		os.Remove(tmp.Name())
	}
	for _, ext := range []string{".pkg", ".sig"} {
		if !slices.Contains(local, ext) {
			c.s.store.RemoveStaged(stagedName(j.ID, ext)) // fetched for this check
		}
	}
	if err != nil {
		res.Result, res.Error = resultOf(err), err.Error()
		return res
	}
	res.Checked = chk
	return res
}

// claim takes job id's claim for this node: a new one, or one whose
// holder let it expire; with mine, the version of this node's own
// (renewal). ok is false when another node holds it, until then (zero
// when unknown).
func (c *Checker) claim(ctx context.Context, id, mine string) (version string, ok bool, until time.Time, err error) {
	b := c.s.bucket
	key := bucketClaims + id
	data, _ := json.Marshal(claim{Holder: c.holder, Expires: time.Now().Add(claimTTL)})
	meta := store.BytesMeta(data)
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if mine == "" {
		err := b.PutIfAbsent(ctx, key, bytes.NewReader(data), meta)
		if err == nil {
			m, err := b.Stat(ctx, key)
			if err != nil {
				return "", false, time.Time{}, err
			}
			return m.Version, true, time.Time{}, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return "", false, time.Time{}, err
		}
		body, m, err := b.Get(ctx, key)
		if err != nil {
			return "", false, time.Time{}, err
		}
		raw, err := io.ReadAll(io.LimitReader(body, 4<<10))
		body.Close()
		var cur claim
		if err == nil && json.Unmarshal(raw, &cur) == nil && time.Now().Before(cur.Expires.Add(claimSkew)) {
			return "", false, cur.Expires.Add(claimSkew), nil // another node checks it
		}
		mine = m.Version // expired, or unreadable: taken over
	}
	v, err := b.PutIfMatch(ctx, key, bytes.NewReader(data), meta, mine)
	if errors.Is(err, store.ErrVersionMismatch) {
		return "", false, time.Time{}, nil
	}
	return v, err == nil, time.Time{}, err
}

// renew keeps the claim of version until ctx ends.
func (c *Checker) renew(ctx context.Context, id, version string) {
	t := time.NewTicker(claimTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, ok, _, err := c.claim(ctx, id, version)
		if !ok {
			if ctx.Err() == nil {
				c.log.Warn("lost the claim of a publish job: another node may check it too", "job", id, "err", err)
			}
			return
		}
		version = v
	}
}

// unclaim gives back a claim of this node's before it checked anything.
func (c *Checker) unclaim(id, version string) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := c.s.bucket.Delete(ctx, bucketClaims+id); err != nil {
		c.log.Debug("give back a claim", "job", id, "version", version, "err", err)
	}
}

// collect commits the results of the checks that are in the bucket, for
// the jobs this publisher has pending, every checkEvery or when poked
// (Checked), until ctx ends; hosted.workers commit at once.
func (s *Service) collect(ctx context.Context) {
	sem := make(chan struct{}, s.tun.Workers)
	var commits stdsync.WaitGroup
	defer commits.Wait()
	var mu stdsync.Mutex
	busy := map[string]bool{} // ids being committed
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(s.hold, recordTimeout)
		keys, err := s.bucket.List(lctx, bucketChecked)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("list the results of checks", "err", err)
		}
		for _, key := range keys {
			id := strings.TrimPrefix(key, bucketChecked)
			mu.Lock()
			skip := busy[id]
			mu.Unlock()
			if skip || !s.waiting(id) {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			mu.Lock()
			busy[id] = true
			mu.Unlock()
			commits.Go(func() {
				defer func() {
					mu.Lock()
					delete(busy, id)
					mu.Unlock()
					<-sem
				}()
				s.commitResult(id)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.collectWake:
		}
	}
}

// Checked makes the publisher look for results now: a check of this
// node's just put one.
func (s *Service) Checked() {
	select {
	case s.collectWake <- struct{}{}:
	default:
	}
}

// waiting reports whether job id is pending here, its result not yet
// committed.
func (s *Service) waiting(id string) bool {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	j, ok := s.jobs[id]
	return ok && !j.Finished()
}

// commitResult commits the result of job id's check, and records how the
// job ended.
func (s *Service) commitResult(id string) {
	s.jobMu.Lock()
	j := s.jobs[id]
	s.jobMu.Unlock()
	r := s.repos[j.Distro+"/"+j.Repo]
	if r == nil {
		return // failed at load: no longer a hosted repo
	}
	res, err := s.readResult(id)
	if err != nil {
		// Unreadable: another check puts a good one only if this one goes.
		s.log.Warn("a check's result is unreadable: checked again", "job", id, "err", err)
		ctx, cancel := context.WithTimeout(s.hold, recordTimeout)
		defer cancel()
		s.bucket.Delete(ctx, bucketChecked+id)
		s.bucket.Delete(ctx, bucketClaims+id)
		return
	}
	var rel string
	switch {
	case res.Result != ResultDone:
		err = resultErr(res.Result, res.Error)
	default:
		rel, err = s.commitChecked(r, &j, res.Checked)
	}
	s.end(r, j, rel, err)
}

func (s *Service) readResult(id string) (*checkResult, error) {
	ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
	defer cancel()
	body, _, err := s.bucket.Get(ctx, bucketChecked+id)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxChecked+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxChecked {
		return nil, fmt.Errorf("over %d bytes", maxChecked)
	}
	res := &checkResult{}
	if err := json.Unmarshal(data, res); err != nil {
		return nil, err
	}
	if res.Result == ResultDone && res.Checked == nil || !slices.Contains(results, res.Result) {
		return nil, fmt.Errorf("result %q without a package", res.Result)
	}
	return res, nil
}

// resultErr is the error a failed check's result stands for.
func resultErr(result, msg string) error {
	switch result {
	case ResultRefused:
		return fmt.Errorf("%w: %s", ErrOlderVersion, msg)
	case ResultInvalid:
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	return errors.New(msg)
}

// commitChecked commits what another node's check (or this one's) found
// of j's package. The bytes are the upload's, from this node's staging or
// the bucket, and must hash to what the check parsed; what the result
// says of names and arches is checked as an upload's is, since whoever
// can write the bucket can write results.
func (s *Service) commitChecked(r *repo, j *Job, c *checked) (string, error) {
	p := c.Package
	if p == nil || !plainFile(p.Filename) || len(c.Arches) == 0 {
		return "", fmt.Errorf("%w: a check's result names no package file", ErrInvalid)
	}
	if fn, err := alpm.ParseFileName(p.Filename); err != nil || fn.Name != p.Name || fn.Version != p.Version || fn.Arch != p.Arch {
		return "", fmt.Errorf("%w: a check's result names %q for %s %s %s", ErrInvalid, p.Filename, p.Name, p.Version, p.Arch)
	}
	for _, a := range c.Arches {
		if !slices.Contains(r.arches, a) || (p.Arch != "any" && a != p.Arch) {
			return "", fmt.Errorf("%w: a check's result puts %s into arch %q", ErrInvalid, p.Filename, a)
		}
	}
	if err := s.fetchStaged(*j); err != nil {
		return "", err
	}
	in, err := s.store.OpenStaged(stagedName(j.ID, ".pkg"))
	if err != nil {
		return "", fmt.Errorf("open staged upload: %w", err)
	}
	defer in.Close()
	tmp, err := s.store.CreateTemp("publish-*")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("copy the upload: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256Sum {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("the upload's sha256 is %s, the check's %s", sum, p.SHA256Sum)
	}
	return s.commit(r, j, c, tmp)
}
