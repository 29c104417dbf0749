package hosted

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is where a job is in its life.
type Status string

const (
	Queued  Status = "queued"
	Running Status = "running"
	Done    Status = "done"
	Failed  Status = "failed"
)

// Results of a finished job, also the label values of
// mirrord_publish_jobs_total.
const (
	ResultDone    = "done"
	ResultRefused = "refused" // ErrOlderVersion
	ResultInvalid = "invalid" // ErrInvalid
	ResultError   = "error"   // anything else: disk, store
)

var results = []string{ResultDone, ResultRefused, ResultInvalid, ResultError}

// Job is one acknowledged upload. It is kept under "job/{id}" so that it
// survives a restart; its staged files (in the store's staging) are
// {id}.pkg and {id}.sig.
type Job struct {
	ID      string    `json:"id"`
	Distro  string    `json:"distro"`
	Repo    string    `json:"repo"`
	Status  Status    `json:"status"`
	Result  string    `json:"result,omitempty"` // one of the Result* once finished
	Error   string    `json:"error,omitempty"`
	Upload  string    `json:"upload,omitempty"` // the file name the client gave, if any
	Size    int64     `json:"size"`
	HasSig  bool      `json:"has_sig,omitempty"`
	Force   bool      `json:"force,omitempty"`
	Package *Released `json:"package,omitempty"` // set when parsed
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// PublishedAt is when the databases of every arch the package went
	// into were first rebuilt after it and put in place, so that a
	// client's pacman -Sy sees it; nil until then, and for a failed job.
	PublishedAt *time.Time `json:"published_at"`
}

// Released names what a job published.
type Released struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Arch     string   `json:"arch"`
	Filename string   `json:"filename"`
	SHA256   string   `json:"sha256"`
	Arches   []string `json:"arches"` // the repo arches whose db lists it
}

// Finished reports whether the job's worker is done with it.
func (j Job) Finished() bool { return j.Status == Done || j.Status == Failed }

// Settled reports whether the job will change no more: it failed, or it
// is done and its package is in the served databases.
func (j Job) Settled() bool { return j.Status == Failed || (j.Status == Done && j.PublishedAt != nil) }

// Err returns the job's failure as an error that wraps the sentinel its
// result stands for, so that a caller can map it like any other.
func (j Job) Err() error {
	if j.Status != Failed {
		return nil
	}
	switch j.Result {
	case ResultRefused:
		return fmt.Errorf("%w: %s", ErrOlderVersion, j.Error)
	case ResultInvalid:
		return fmt.Errorf("%w: %s", ErrInvalid, j.Error)
	}
	return errors.New(j.Error)
}

const jobPrefix = "job/"

// newJobID is sortable by creation time (so a restart requeues in upload
// order) and unguessable enough not to collide.
func newJobID(now time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%016x%s", now.UnixNano(), hex.EncodeToString(r[:]))
}

// validJobID keeps ids from becoming paths.
func validJobID(id string) bool {
	if len(id) != 24 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// putJob records j. A PublishedAt already recorded is kept: the repo's
// actor may publish the db that lists the package before the worker
// records the job done.
func (s *Service) putJob(j Job) error {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	if cur, ok := s.jobs[j.ID]; ok && j.PublishedAt == nil {
		j.PublishedAt = cur.PublishedAt
	}
	return s.putJobLocked(j)
}

// published records that the databases listing job id's package are in
// place since at. A job already pruned is left so.
func (s *Service) published(id string, at time.Time) error {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil
	}
	j.PublishedAt = &at
	return s.putJobLocked(j)
}

func (s *Service) putJobLocked(j Job) error {
	j.Updated = s.now()
	val, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := s.rec.Put(jobPrefix+j.ID, val); err != nil {
		return fmt.Errorf("record job %s: %w", j.ID, err)
	}
	s.jobs[j.ID] = j
	s.notify()
	return nil
}

// dropJob deletes the record of job id with del, then forgets it.
func (s *Service) dropJob(id string, del func(key string) error) error {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	if err := del(jobPrefix + id); err != nil {
		return err
	}
	delete(s.jobs, id)
	return nil
}

// Job returns the job with id, or ErrNotFound.
func (s *Service) Job(id string) (Job, error) {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return j, nil
}

// Jobs returns the latest jobs of distro/repo, newest first, at most
// limit; distro and repo "" match every one. Finished jobs are kept for
// hosted.retention (at least an hour). Ids sort by creation time.
func (s *Service) Jobs(distro, repo string, limit int) ([]Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	s.jobMu.Lock()
	var list []Job
	for _, j := range s.jobs {
		if (distro == "" || j.Distro == distro) && (repo == "" || j.Repo == repo) {
			list = append(list, j)
		}
	}
	s.jobMu.Unlock()
	slices.SortFunc(list, func(a, b Job) int { return strings.Compare(b.ID, a.ID) })
	return list[:min(limit, len(list))], nil
}

// WaitJob returns the job once it is settled (failed, or done and in the
// served databases), or when ctx ends with what it is then (and ctx's
// error).
func (s *Service) WaitJob(ctx context.Context, id string) (Job, error) {
	for {
		ch := s.changed()
		j, err := s.Job(id)
		if err != nil || j.Settled() {
			return j, err
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-ch:
		}
	}
}
