package hosted

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"golang.org/x/sync/semaphore"

	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/store"
)

// decodeBudget is the window memory that uploads may decode with at once:
// a zstd frame or an xz block makes its decoder allocate the window its
// header declares, up to alpm.MaxWindow (128 MiB), whatever the file's
// size. The budget fits one such upload, or four of makepkg's 32 MiB zstd
// windows; others wait their turn. Issue 14: four 10-44 KB uploads with
// 128 MiB windows took a daemon from 197 MB to 1.15 GB.
const decodeBudget = alpm.MaxWindow

// decodeMemory holds decodeBudget for the whole process, since that is
// what memory is per: every Service of a process draws on it.
var decodeMemory = semaphore.NewWeighted(decodeBudget)

// collectAbove is the window above which a release collects garbage
// before it returns the budget: the window is garbage by then, and the
// next read allocates its own in the memory just freed instead of beside
// it. Without it, eight 128 MiB uploads in a row peaked at 470 MB RSS
// (the heap may grow to twice what is live before the GC runs). zstd -19
// declares 8 MiB; a collection of a heap this size takes milliseconds.
const collectAbove = 8 << 20

// reserveDecode is alpm.ReadOptions.Reserve for uploads: it waits until
// the window fits in decodeBudget.
func reserveDecode(n int64) func() {
	n = min(n, decodeBudget)
	_ = decodeMemory.Acquire(context.Background(), n) // fails only when its context ends
	return func() {
		if n > collectAbove {
			runtime.GC()
		}
		decodeMemory.Release(n)
	}
}

// readOptions are the limits of reading an upload.
func (s *Service) readOptions(listFiles bool) alpm.ReadOptions {
	return alpm.ReadOptions{ListFiles: listFiles, MaxUncompressed: 16 * s.MaxSize(),
		MaxFiles: s.tun.MaxFilesPerPackage, Reserve: reserveDecode}
}

// precheck reads only the .PKGINFO of the staged upload in and refuses
// what it can tell from there alone: the arch, the file name and a version
// not newer than the one published. It returns the package with its
// Filename and the arches it goes to. Reading all of an upload can mean
// gigabytes of decompression; a refusal this way costs a few kilobytes.
func (s *Service) precheck(r *repo, j *Job, in io.Reader, ext string) (*alpm.Package, []string, error) {
	pi, err := alpm.ReadPackageInfo(in, s.readOptions(false))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p := &pi.Package
	if err := alpm.ValidArch(p.Arch); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	arches := r.arches
	if p.Arch != "any" {
		if !slices.Contains(r.arches, p.Arch) {
			return nil, nil, fmt.Errorf("%w: arch %q is not one of %s's arches %v or any", ErrInvalid, p.Arch, r.key, r.arches)
		}
		arches = []string{p.Arch}
	}
	p.Filename = p.Name + "-" + p.Version + "-" + p.Arch + ext
	if _, err := alpm.ParseFileName(p.Filename); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c, ok := unservable(p.Filename); ok {
		return nil, nil, fmt.Errorf("%w: file name %q has %q, which no mirror URL serves (pkgver: letters, digits, . _ + ~ @)", ErrInvalid, p.Filename, c)
	}
	if j.Force {
		return p, arches, nil
	}
	// The version check of repo.commit, read from the index the actor
	// persists before it changes its own: commit checks again, so a
	// publish racing this one is still refused there.
	for _, a := range arches {
		val, err := s.rec.Get(r.idxKey(a, p.Name))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var cur struct{ Version, Job string }
		if err := json.Unmarshal(val, &cur); err != nil {
			return nil, nil, fmt.Errorf("index of %s in %s/%s: %w", p.Name, r.key, a, err)
		}
		if cur.Job == j.ID {
			continue // this job ran before a crash: commit sees it is done
		}
		if alpm.Vercmp(p.Version, cur.Version) <= 0 {
			return nil, nil, fmt.Errorf("%w: %s %s is published in %s/%s; %s is not newer (publish with force to replace it)",
				ErrOlderVersion, p.Name, cur.Version, r.key, a, p.Version)
		}
	}
	return p, arches, nil
}
