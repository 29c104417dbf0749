package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// stagingDir holds files that a caller has made durable but not yet put
// in the tree: internal/hosted's acknowledged uploads waiting for a
// worker. Unlike tmp/ it survives a restart; which of its files are still
// wanted only the caller knows (ListStaged, RemoveStaged), and it is as
// private as tmp/ (folder 0700, files 0600): an upload not yet checked is
// nobody else's business.
const stagingDir = "staging"

// StagedFile is a file being written for staging/. Until CommitStaged it
// is a temp file in tmp/ (so a crash leaves nothing of it in staging/);
// after, it is staging/{name}, complete and durable. It is not safe for
// concurrent use.
type StagedFile struct {
	s         *Store
	f         *os.File
	name      string
	committed bool
}

// CreateStaged starts a file that CommitStaged places in staging/ as
// name, a single path segment that the caller keeps unique. The caller
// ends it with Close once committed, or Discard.
func (s *Store) CreateStaged(name string) (*StagedFile, error) {
	if err := validStagedName(name); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "staged-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	return &StagedFile{s: s, f: f, name: name}, nil
}

// Write appends p to the file.
func (f *StagedFile) Write(p []byte) (int, error) { return f.f.Write(p) }

// ReadAt reads what was written, at off.
func (f *StagedFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Close closes the file and keeps it: in staging/ once committed, in tmp/
// (wiped at the next start) otherwise.
func (f *StagedFile) Close() error { return f.f.Close() }

// Discard closes the file and removes it, from staging/ if it was
// committed. It is safe to call after Close and more than once.
func (f *StagedFile) Discard() {
	f.f.Close()
	if f.committed {
		f.s.RemoveStaged(f.name)
	} else {
		os.Remove(f.f.Name())
	}
}

// CommitStaged makes files durable in staging/: fsync each, rename each
// to its name, then fsync staging/ once for all of them. Once it returns
// nil they survive a crash; nil entries are skipped. A file renamed
// before an error is committed and removed by its Discard.
func (s *Store) CommitStaged(files ...*StagedFile) error {
	for _, f := range files {
		if f == nil {
			continue
		}
		if err := f.f.Sync(); err != nil {
			return fmt.Errorf("stage %s: sync: %w", f.name, err)
		}
	}
	for _, f := range files {
		if f == nil || f.committed {
			continue
		}
		if err := s.root.Rename(tmpDir+"/"+filepath.Base(f.f.Name()), stagingDir+"/"+f.name); err != nil {
			return fmt.Errorf("stage %s: %w", f.name, err)
		}
		f.committed = true
	}
	if err := syncDir(s.root, stagingDir); err != nil {
		return fmt.Errorf("stage: sync %s: %w", stagingDir, err)
	}
	return nil
}

// OpenStaged opens staging/{name} for reading; ErrNotFound if it is not
// there.
func (s *Store) OpenStaged(name string) (*os.File, error) {
	if err := validStagedName(name); err != nil {
		return nil, ErrNotFound
	}
	f, err := s.root.Open(stagingDir + "/" + name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("staged %s: %w", name, ErrNotFound)
	}
	return f, err
}

// RemoveStaged removes staging/{name}; a file not there is no error.
func (s *Store) RemoveStaged(name string) error {
	if err := validStagedName(name); err != nil {
		return err
	}
	if err := s.root.Remove(stagingDir + "/" + name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ListStaged names the files in staging/, sorted. At start they are what
// was committed before the last stop or crash: the caller removes those
// it no longer wants.
func (s *Store) ListStaged() ([]string, error) {
	ents, err := fs.ReadDir(s.root.FS(), stagingDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", stagingDir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// validStagedName keeps a staged name a file directly in staging/.
func validStagedName(name string) error {
	if CleanPath(name) != nil || strings.Contains(name, "/") {
		return fmt.Errorf("invalid staged name %q", name)
	}
	return nil
}
