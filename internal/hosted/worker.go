package hosted

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/mirrord/mirrord/internal/alpm"
)

// work runs jobs until ctx ends. A job once taken runs to its end, even
// during shutdown: it is short, and its files are already durable.
func (s *Service) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			s.run(j)
		}
	}
}

// run processes one job and records how it ended.
func (s *Service) run(j Job) {
	r := s.repos[j.Distro+"/"+j.Repo]
	j.Status = Running
	if err := s.putJob(j); err != nil {
		s.log.Error("record job", "job", j.ID, "err", err)
	}
	rel, err := s.publish(r, &j)
	s.end(r, j, rel, err)
}

// end records how job j of r ended (err nil: published as rel), and
// removes its uploads.
func (s *Service) end(r *repo, j Job, rel string, err error) {
	defer func() {
		r.pending.Add(-1)
		s.pending.Add(-1)
		r.poke()
		s.notify()
	}()
	j.Status, j.Result = Done, ResultDone
	if err != nil {
		j.Status, j.Error, j.Result = Failed, err.Error(), resultOf(err)
	}
	s.metrics.jobs.WithLabelValues(j.Result).Inc()
	if err := s.putJob(j); err != nil {
		// The job stays pending in the store and runs again at the next
		// start; publishing is idempotent for a job.
		s.log.Error("record job", "job", j.ID, "err", err)
		return
	}
	s.store.RemoveStaged(stagedName(j.ID, ".pkg"))
	s.store.RemoveStaged(stagedName(j.ID, ".sig"))
	if s.bucket != nil {
		s.dropStaged(s.hold, j.ID)
	}
	if err != nil {
		s.log.Info("publish refused", "repo", r.key, "job", j.ID, "err", err)
	} else {
		s.log.Info("published", "repo", r.key, "job", j.ID, "file", rel)
	}
}

// resultOf is the Result* of a job that failed with err.
func resultOf(err error) string {
	switch {
	case errors.Is(err, ErrOlderVersion):
		return ResultRefused
	case errors.Is(err, ErrInvalid):
		return ResultInvalid
	}
	return ResultError
}

// publish checks the staged package of j and hands it to the repo's actor.
func (s *Service) publish(r *repo, j *Job) (string, error) {
	c, tmp, err := s.check(r, j)
	if err != nil {
		return "", err
	}
	return s.commit(r, j, c, tmp)
}

// checked is what a check found of a job's package: what its db entry
// says, the arches it goes to, and the signature it is published with
// (uploaded and verified, or made here) and whose it is.
type checked struct {
	Package  *alpm.Package `json:"package"`
	Arches   []string      `json:"arches"`
	Sig      []byte        `json:"sig,omitempty"`
	SignedBy string        `json:"signed_by,omitempty"`
}

// check reads the staged package of j. It reads the .PKGINFO first
// (precheck), so that an upload refused for its name, arch or version
// costs no more than that; then the whole package once: parse (with the
// file list, so the whole archive is checked), checksums, and the copy
// into a store temp file, tmp, all come from that pass. The caller owns
// tmp (open, at its start).
func (s *Service) check(r *repo, j *Job) (_ *checked, _ *os.File, err error) {
	if s.bucket != nil {
		if err := s.fetchStaged(*j); err != nil {
			return nil, nil, err
		}
	}
	in, err := s.store.OpenStaged(stagedName(j.ID, ".pkg"))
	if err != nil {
		return nil, nil, fmt.Errorf("open staged upload: %w", err)
	}
	defer in.Close()
	var head [262]byte
	n, _ := in.ReadAt(head[:], 0)
	ext, _ := extension(head[:n]) // checked at upload
	info, arches, err := s.precheck(r, j, in, ext)
	if err != nil {
		return nil, nil, err
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return nil, nil, fmt.Errorf("rewind staged upload: %w", err)
	}
	tmp, err := s.store.CreateTemp("publish-*")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	p, err := alpm.ReadPackage(io.TeeReader(in, tmp), s.readOptions(true))
	if errors.Is(err, alpm.ErrFileList) {
		return nil, nil, fmt.Errorf("%w: %v (hosted.max_files_per_package is %d)", ErrInvalid, err, s.tun.MaxFilesPerPackage)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p.Filename = info.Filename // the same staged file: its .PKGINFO is info's
	j.Package = &Released{Name: p.Name, Version: p.Version, Arch: p.Arch, Filename: p.Filename, SHA256: p.SHA256Sum, Arches: arches}
	sig, signedBy, err := s.signature(r, j, tmp)
	if err != nil {
		return nil, nil, err
	}
	if sig != nil {
		if p.PGPSig, err = alpm.EncodeSig(sig); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	return &checked{Package: p, Arches: arches, Sig: sig, SignedBy: signedBy}, tmp, nil
}

// commit hands the checked package of j, whose bytes are the store temp
// file tmp, to the repo's actor; it owns tmp.
func (s *Service) commit(r *repo, j *Job, c *checked, tmp *os.File) (string, error) {
	p, sig, arches := c.Package, c.Sig, c.Arches
	temps := []string{tmp.Name()}
	var req *commitReq
	defer func() {
		for _, t := range temps {
			if req == nil || !slices.Contains(req.committed, t) {
				os.Remove(t)
			}
		}
	}()
	defer tmp.Close()
	j.Package = &Released{Name: p.Name, Version: p.Version, Arch: p.Arch, Filename: p.Filename, SHA256: p.SHA256Sum, Arches: arches}
	req = &commitReq{job: j.ID, pkg: p, force: j.Force, signedBy: c.SignedBy, files: map[string]*os.File{}, sigs: map[string]*os.File{}, reply: make(chan error, 1)}
	// One copy per arch db that lists it: the store links nothing across
	// folders, and an any package is served in every arch.
	for i, a := range arches {
		f := tmp
		if i > 0 {
			var err error
			if f, err = s.copyTemp(tmp); err != nil {
				return "", err
			}
			defer f.Close()
			temps = append(temps, f.Name())
		}
		if err := f.Sync(); err != nil {
			return "", fmt.Errorf("sync %s: %w", p.Filename, err)
		}
		req.files[a] = f
		if sig != nil {
			sf, err := s.store.CreateTemp("publish-sig-*")
			if err != nil {
				return "", err
			}
			defer sf.Close()
			temps = append(temps, sf.Name())
			if _, err := sf.Write(sig); err != nil {
				return "", fmt.Errorf("stage signature: %w", err)
			}
			req.sigs[a] = sf
		}
	}
	if err := r.do(context.Background(), req); err != nil {
		return "", err
	}
	return r.dirs[arches[0]] + "/" + p.Filename, nil
}

// copyTemp copies a store temp file into a new one.
func (s *Service) copyTemp(src *os.File) (*os.File, error) {
	dst, err := s.store.CreateTemp("publish-*")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, 0, 1<<62)); err != nil {
		dst.Close()
		os.Remove(dst.Name())
		return nil, fmt.Errorf("copy package: %w", err)
	}
	return dst, nil
}

// unservable finds a character of a package file name that the tree's
// URLs never carry (internal/proxy refuses it before the filesystem):
// makepkg allows any printable character in a pkgver but '!', '%', '?',
// '#' or a backslash would make a package that is in the db and that no
// client can download. Found by fuzzing (FuzzParseFileName).
func unservable(name string) (byte, bool) {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-', c == '+', c == '@', c == ':', c == '~':
		default:
			return c, true
		}
	}
	return 0, false
}
