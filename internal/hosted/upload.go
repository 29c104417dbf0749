package hosted

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/store"
)

// maxSig bounds a detached signature, as pacman and repo-add do.
const maxSig = 16 << 10

// Upload is one package being received into the store's staging. The
// caller streams the package (and optionally its signature) in, then
// calls Submit; Abort (deferred) removes whatever was not submitted.
type Upload struct {
	s         *Service
	r         *repo
	id        string
	name      string // the client's file name, for the job record
	pkg, sig  *store.StagedFile
	size      int64
	sigSize   int64
	pkgSum    hash.Hash // of what was received, for the bucket's copy
	sigSum    hash.Hash
	submitted bool
}

// NewUpload starts an upload into a hosted repo; ErrNotFound if the repo
// is not a hosted one.
func (s *Service) NewUpload(distro, repo string) (*Upload, error) {
	r, err := s.repoOf(distro, repo)
	if err != nil {
		return nil, err
	}
	return &Upload{s: s, r: r, id: newJobID(s.now())}, nil
}

// MaxSize is the cap on a package upload (hosted.max_upload).
func (s *Service) MaxSize() int64 { return int64(s.tun.MaxUpload) }

// ReadPackage streams the package from r into staging. It stops with
// ErrTooLarge past hosted.max_upload and with ErrInvalid when the bytes
// are no archive pacman reads; an error of r is returned wrapped. name is
// the client's file name (may be empty), kept for the job record.
func (u *Upload) ReadPackage(name string, r io.Reader) error {
	if u.pkg != nil {
		return fmt.Errorf("%w: two packages in one upload", ErrInvalid)
	}
	f, err := u.s.store.CreateStaged(stagedName(u.id, ".pkg"))
	if err != nil {
		return fmt.Errorf("stage upload: %w", err)
	}
	u.pkg, u.name = f, name
	limit := u.s.MaxSize()
	n, err := io.Copy(u.s.received(f, &u.pkgSum), io.LimitReader(r, limit+1))
	u.size = n
	if err != nil {
		return fmt.Errorf("receive package: %w", err)
	}
	if n > limit {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	var head [262]byte
	m, _ := f.ReadAt(head[:], 0)
	if _, ok := extension(head[:m]); !ok {
		return fmt.Errorf("%w: not a package archive (no zstd, xz, gzip, bzip2 or tar header)", ErrInvalid)
	}
	return nil
}

// ReadSig streams a detached signature (at most 16 KiB) into staging.
func (u *Upload) ReadSig(r io.Reader) error {
	if u.sig != nil {
		return fmt.Errorf("%w: two signatures in one upload", ErrInvalid)
	}
	f, err := u.s.store.CreateStaged(stagedName(u.id, ".sig"))
	if err != nil {
		return fmt.Errorf("stage signature: %w", err)
	}
	u.sig = f
	n, err := io.Copy(u.s.received(f, &u.sigSum), io.LimitReader(r, maxSig+1))
	u.sigSize = n
	if err != nil {
		return fmt.Errorf("receive signature: %w", err)
	}
	if n > maxSig {
		return fmt.Errorf("%w: signature over %d bytes", ErrInvalid, maxSig)
	}
	return nil
}

// Submit makes the staged files durable, records the job and queues it:
// once it returns without error the upload survives a crash.
func (u *Upload) Submit(force bool) (Job, error) {
	if u.pkg == nil {
		return Job{}, fmt.Errorf("%w: no package in the upload", ErrInvalid)
	}
	if err := u.s.store.CommitStaged(u.pkg, u.sig); err != nil {
		return Job{}, err
	}
	if u.s.bucket != nil {
		// In the bucket before the job's record: whichever node runs
		// the job finds its bytes. Not acknowledged, they leave it.
		put := u.s.putStaged(stagedName(u.id, ".pkg"), objectMeta(u.size, u.pkgSum))
		if put == nil && u.sig != nil {
			put = u.s.putStaged(stagedName(u.id, ".sig"), objectMeta(u.sigSize, u.sigSum))
		}
		if put != nil {
			u.s.dropStaged(context.Background(), u.id)
			return Job{}, put
		}
		defer func() {
			if !u.submitted {
				u.s.dropStaged(context.Background(), u.id)
			}
		}()
	}
	now := u.s.now()
	j := Job{
		ID: u.id, Distro: u.r.distro, Repo: u.r.name, Status: Queued,
		Upload: u.name, Size: u.size, HasSig: u.sig != nil, Force: force, Created: now,
	}
	// Counted before the job can run, so a builder never sees the repo
	// idle while this upload waits.
	u.r.pending.Add(1)
	u.r.lastActivity.Store(now.UnixNano())
	u.s.pending.Add(1)
	undo := func() {
		u.r.pending.Add(-1)
		u.s.pending.Add(-1)
		u.r.poke()
	}
	if err := u.s.putJob(j); err != nil {
		undo()
		return Job{}, err
	}
	if err := held(u.s.hold); err != nil {
		// The record may have landed after the next holder read the
		// records: then it runs a job whose client is told to try
		// again, which a retry finds published.
		undo()
		u.s.forget(j.ID)
		return Job{}, err
	}
	if u.s.bucket != nil {
		// A Checker of any node takes the job from the bucket.
		if u.s.pending.Load() > int64(cap(u.s.queue)) {
			undo()
			u.s.forget(j.ID)
			return Job{}, ErrBusy
		}
		if u.s.queued != nil {
			u.s.queued()
		}
	} else {
		select {
		case u.s.queue <- j:
		default:
			undo()
			u.s.forget(j.ID)
			return Job{}, ErrBusy
		}
	}
	u.submitted = true
	u.close()
	return j, nil
}

// Abort removes the staged files unless the upload was submitted. It is
// safe to call more than once.
func (u *Upload) Abort() {
	if u.submitted {
		return // Submit closed the files: they are the job's now
	}
	for _, f := range []*store.StagedFile{u.pkg, u.sig} {
		if f != nil {
			f.Discard()
		}
	}
}

// forget deletes the record of a job that was not acknowledged. In a
// bucket it is deleted even once the hold has ended: no client was told
// of it.
func (s *Service) forget(id string) {
	rec := s.rec
	if b, ok := rec.(bucketRecords); ok {
		b.hold = nil
		rec = b
	}
	if err := s.dropJob(id, rec.Delete); err != nil {
		s.log.Warn("delete the record of a job not acknowledged", "job", id, "err", err)
	}
}

func (u *Upload) close() {
	for _, f := range []*store.StagedFile{u.pkg, u.sig} {
		if f != nil {
			f.Close()
		}
	}
}

// received is where an upload's bytes go: into f and, with a bucket, a
// sha256 made in *sum for the bucket's copy (a single node needs none:
// the worker hashes what it publishes).
func (s *Service) received(f *store.StagedFile, sum *hash.Hash) io.Writer {
	if s.bucket == nil {
		return f
	}
	*sum = sha256.New()
	return io.MultiWriter(f, *sum)
}

func objectMeta(size int64, h hash.Hash) store.ObjectMeta {
	return store.ObjectMeta{Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
}

// stagedName is the name in the store's staging of a job's package
// (ext ".pkg") or signature (".sig"); load tells a job's files by the id
// before the first '.'.
func stagedName(id, ext string) string { return id + ext }

// extension names the package file by its content, as makepkg would;
// ok is false when head is no archive pacman reads.
func extension(head []byte) (ext string, ok bool) {
	c, ok := alpm.SniffCompression(head)
	return ".pkg.tar" + c.Ext(), ok
}
