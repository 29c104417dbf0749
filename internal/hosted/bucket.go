package hosted

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// Bucket is the storage a cluster's nodes share (a store.Objects;
// docs/CLUSTER.md). With one, a Service keeps there what a node that
// publishes after it needs: the publish state (bucketRecords), every
// acknowledged upload until its job is over, every published package
// and signature at its tree path, put before an index entry names it,
// and every database built (shareDB), which the other nodes follow.
type Bucket interface {
	Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error)
	Put(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	PutIfMatch(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta, version string) (string, error)
	Stat(ctx context.Context, key string) (store.ObjectMeta, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
	Copy(ctx context.Context, src, dst string, meta store.ObjectMeta) error
}

// Keys in the bucket, beside the tree (a distro may not be named
// _mirrord): the records under bucketPrefix, the uploads of pending
// jobs under bucketStaging by their staged names.
const (
	bucketPrefix  = "_mirrord/hosted/"
	bucketStaging = bucketPrefix + "staging/"
)

// transferTimeout bounds one package's transfer to or from the bucket:
// hosted.max_upload bytes at a slow link's pace.
const transferTimeout = 10 * time.Minute

// held is nil while the hold (Options.Hold) that ctx derives from lasts,
// else why this node may write the bucket no more: busy, so that the
// client tries again and reaches the next publisher.
func held(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("%w: no longer publishing here (%v)", ErrBusy, err)
	}
	return nil
}

// putStaged puts a committed staged file into the bucket, so that the
// job survives this node.
func (s *Service) putStaged(name string, meta store.ObjectMeta) error {
	if err := held(s.hold); err != nil {
		return err
	}
	f, err := s.store.OpenStaged(name)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
	defer cancel()
	if err := s.bucket.Put(ctx, bucketStaging+name, f, meta); err != nil {
		return fmt.Errorf("stage %s in the bucket: %w", name, err)
	}
	return nil
}

// fetchStaged brings the staged files of j from the bucket into the
// store's staging: a job another node acknowledged, or this node before
// it lost its disk. Each is checked against the size and sha256 it was
// put with.
func (s *Service) fetchStaged(j Job) error {
	exts := []string{".pkg"}
	if j.HasSig {
		exts = append(exts, ".sig")
	}
	for _, ext := range exts {
		name := stagedName(j.ID, ext)
		if f, err := s.store.OpenStaged(name); err == nil {
			f.Close()
			continue
		}
		if err := s.fetchOne(name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) fetchOne(name string) error {
	ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
	defer cancel()
	key := bucketStaging + name
	body, meta, err := s.bucket.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("the upload %s in the bucket: %w", name, err)
	}
	defer body.Close()
	limit := s.MaxSize()
	if strings.HasSuffix(name, ".sig") {
		limit = maxSig
	}
	if meta.Size > limit || meta.SHA256 == "" {
		return fmt.Errorf("%w: the upload %s in the bucket: %d bytes, sha256 %q", ErrInvalid, name, meta.Size, meta.SHA256)
	}
	f, err := s.store.CreateStaged(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, store.CheckedReader(key, body, meta)); err != nil {
		f.Discard()
		return fmt.Errorf("the upload %s in the bucket: %w", name, err)
	}
	if err := s.store.CommitStaged(f); err != nil {
		f.Discard()
		return err
	}
	return f.Close()
}

// dropStaged deletes job id's objects from the bucket (its uploads, the
// claim and result of its check), within ctx: a finished job's within
// the hold (a publisher past its lease must not take them from the next
// holder, which may run the job again), an upload's that was not
// acknowledged whether the hold lasts or not. One left behind costs
// space, not correctness: the next holder's sweep takes it.
func (s *Service) dropStaged(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	for _, key := range jobObjects(id) {
		if err := s.bucket.Delete(ctx, key); err != nil {
			s.log.Warn("delete a finished job's object from the bucket", "key", key, "err", err)
		}
	}
}

// jobObjects are the keys of job id's objects in the bucket.
func jobObjects(id string) []string {
	return []string{bucketStaging + stagedName(id, ".pkg"), bucketStaging + stagedName(id, ".sig"), bucketClaims + id, bucketChecked + id}
}

// sweepStaged deletes the bucket's objects of jobs not in keep (those
// pending): uploads whose job was never recorded (their node died
// between the two puts), and uploads, claims and results of jobs that
// are over (their node died before dropStaged). Run at load, before this
// node acknowledges anything: the publisher before it cannot record a
// job any more (its hold has ended), so an upload without one is never
// going to have one. It returns the pending jobs whose upload is there.
func (s *Service) sweepStaged(keep map[string]bool) map[string]bool {
	ctx, cancel := context.WithTimeout(s.hold, recordTimeout)
	defer cancel()
	staged := map[string]bool{}
	n := 0
	for _, prefix := range []string{bucketStaging, bucketClaims, bucketChecked} {
		keys, err := s.bucket.List(ctx, prefix)
		if err != nil {
			s.log.Warn("list the jobs' objects in the bucket", "prefix", prefix, "err", err)
			return nil
		}
		for _, key := range keys {
			name := strings.TrimPrefix(key, prefix)
			id, _, _ := strings.Cut(name, ".")
			if keep[id] {
				if prefix == bucketStaging && name == stagedName(id, ".pkg") {
					staged[id] = true
				}
				continue
			}
			if err := s.bucket.Delete(ctx, key); err != nil {
				s.log.Warn("delete an object of no pending job from the bucket", "key", key, "err", err)
				return nil
			}
			n++
		}
	}
	if n > 0 {
		s.log.Info("deleted objects of no pending job from the bucket", "objects", n)
	}
	return staged
}

// putTree puts the tree's rel, just committed, into the bucket at the same
// path, with its sha256 if it has one, and marks the tree's copy shared.
func (s *Service) putTree(rel string) error {
	f, err := s.store.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := s.store.Stat(rel)
	if err != nil {
		return err
	}
	meta := store.ObjectMeta{Size: m.Size, SHA256: m.SHA256, LastModified: m.LastModified}
	if meta.SHA256 == "" {
		// A signature: hashed here, it is small.
		if meta, err = fileMeta(f); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
	defer cancel()
	if err := s.bucket.Put(ctx, rel, f, meta); err != nil {
		return fmt.Errorf("put %s in the bucket: %w", rel, err)
	}
	s.store.MarkShared(rel)
	return nil
}

// putPackage puts the package just committed at the tree's rel, job's
// upload, into the bucket at the same path: a copy of the staged upload
// inside the bucket (the same bytes: the tree's file was copied from it),
// so that a large package is not sent to the bucket a second time while
// the repo's actor waits; an upload if the copy fails.
func (s *Service) putPackage(job, rel string) error {
	m, err := s.store.Stat(rel)
	if err != nil {
		return err
	}
	if m.SHA256 != "" {
		meta := store.ObjectMeta{Size: m.Size, SHA256: m.SHA256, LastModified: m.LastModified}
		ctx, cancel := context.WithTimeout(s.hold, transferTimeout)
		err = s.bucket.Copy(ctx, bucketStaging+stagedName(job, ".pkg"), rel, meta)
		cancel()
		if err == nil {
			s.store.MarkShared(rel)
			return nil
		}
		if err := held(s.hold); err != nil {
			return err
		}
		s.log.Debug("copy the upload to its tree path in the bucket: uploaded instead", "file", rel, "err", err)
	}
	return s.putTree(rel)
}

// removeFile removes rel from the tree and from the bucket's, if any; a
// file that is in neither is not an error.
func (s *Service) removeFile(rel string) error {
	if err := s.store.Remove(rel); err != nil {
		return err
	}
	if s.bucket == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.hold, recordTimeout)
	defer cancel()
	if err := s.bucket.Delete(ctx, rel); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete %s from the bucket: %w", rel, err)
	}
	return nil
}

// fileMeta is the size and sha256 of f, read whole and rewound.
func fileMeta(f *os.File) (store.ObjectMeta, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxSig+1))
	if err != nil {
		return store.ObjectMeta{}, err
	}
	if len(data) > maxSig {
		return store.ObjectMeta{}, fmt.Errorf("%s: over %d bytes", f.Name(), maxSig)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return store.ObjectMeta{}, err
	}
	return store.BytesMeta(data), nil
}
