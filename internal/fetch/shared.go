package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

// Shared is the object store every node of a cluster reads and fills
// (storage.backend s3; internal/store/s3obj): a package that one node
// fetched from upstream, any other node, or this one after losing its
// disk, brings from there instead. Only immutable files go through it: a
// database is each node's to revalidate.
type Shared interface {
	Get(ctx context.Context, key string) (io.ReadCloser, store.ObjectMeta, error)
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta store.ObjectMeta) error
	Stat(ctx context.Context, key string) (store.ObjectMeta, error)
	Delete(ctx context.Context, key string) error
}

// sharedSource names the shared store where a Response names the mirror
// that answered, in logs and errors.
const sharedSource = "shared storage"

// Owners is the cluster (internal/cluster.Cluster): who owns a file among
// the live nodes, and a fetch of it from that node.
type Owners interface {
	Owner(key string) (node string, self bool)
	Fetch(ctx context.Context, node, key string) (*upstream.Response, error)
}

// source is where a fill's bytes come from.
type source int

const (
	fromUpstream source = iota
	fromShared
	fromPeer
)

// fillNearer fills job, a file that never changes, from its owner node
// or the shared storage, when it can: done false leaves it to upstream.
// A failing owner or store costs a warning, not the request: upstream
// still has the file. The sync's own downloads (job.Batch) are not sent
// to the owner: they are paced by sync.max_bandwidth, which the owner's
// fetch would not honour.
func (f *Fetcher) fillNearer(ctx context.Context, fl *lockfree.Flight, job Job) (done bool, err error) {
	if f.owners != nil && job.Batch == nil {
		// A request that came over the peer route finds this node the
		// owner (the route refuses others), so it is never sent on.
		if owner, self := f.owners.Owner(job.Rel); !self {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stall := f.stallGuard(cancel)
			defer stall.Stop()
			resp, err := f.owners.Fetch(ctx, owner, job.Rel)
			if err == nil {
				defer resp.Body.Close()
				resp.Body = stallReader{resp.Body, stall, f.stallTimeout}
				return true, f.copyAndCommit(ctx, fl, job, resp, fromPeer)
			}
			if errors.Is(err, upstream.ErrNotFound) {
				return true, err // the owner asked upstream
			}
			f.log.Warn("owner unreachable: fetching here", "file", job.Rel, "owner", owner, "err", err)
		}
	}
	if f.shared == nil {
		return false, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := f.stallGuard(cancel)
	defer stall.Stop()
	resp, err := f.fromShared(ctx, job)
	switch {
	case errors.Is(err, errNotTheFile):
		f.dropShared(job.Rel, err)
		return false, nil
	case err != nil:
		if !errors.Is(err, store.ErrNotFound) {
			f.log.Warn("shared storage", "file", job.Rel, "err", err)
		}
		return false, nil
	}
	defer resp.Body.Close()
	resp.Body = stallReader{resp.Body, stall, f.stallTimeout}
	err = f.copyAndCommit(ctx, fl, job, resp, fromShared)
	if errors.Is(err, store.ErrBadBody) {
		// Bytes that are not what their own metadata says: corrupt.
		f.dropShared(job.Rel, err)
	}
	return true, err
}

// errNotTheFile is an object in the shared storage whose size or sha256
// is not what the repo's database names for the file.
var errNotTheFile = errors.New("not the file the database names")

// dropShared deletes a bad copy from the shared storage, so that the file
// is fetched upstream (and put there again) on the next try.
func (f *Fetcher) dropShared(rel string, why error) {
	ctx, cancel := context.WithTimeout(f.bg, 30*time.Second)
	defer cancel()
	if err := f.shared.Delete(ctx, rel); err != nil {
		f.log.Warn("bad copy in the shared storage, not deleted", "file", rel, "why", why, "err", err)
		return
	}
	f.log.Warn("bad copy in the shared storage: deleted", "file", rel, "why", why)
}

// stallGuard is a timer that cancels a fill from the owner or the shared
// storage which has sent nothing for stallTimeout (upstream.stall_timeout,
// the rule of upstream bodies): its clients do not wait for fillTimeout.
func (f *Fetcher) stallGuard(cancel context.CancelFunc) *time.Timer {
	return time.AfterFunc(f.stallTimeout, cancel)
}

// stallReader restarts its stall guard on every read that brings bytes.
type stallReader struct {
	io.ReadCloser
	stall *time.Timer
	d     time.Duration
}

func (s stallReader) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if n > 0 {
		s.stall.Reset(s.d)
	}
	return n, err
}

// shareTimeout bounds one upload of a file to the shared store.
const shareTimeout = 30 * time.Minute

// fromShared opens job.Rel in the shared store as a Response, its body
// checked against the object's own size and sha256 (store.CheckedReader
// holds back the last byte until they match, so a corrupt object reaches
// no client whole). ErrNotFound: the store has no copy; errNotTheFile:
// its copy is not what the database names, which its metadata shows
// before any byte is read, so the flight can still go upstream.
func (f *Fetcher) fromShared(ctx context.Context, job Job) (*upstream.Response, error) {
	body, meta, err := f.shared.Get(ctx, job.Rel)
	if err != nil {
		return nil, err
	}
	if meta.SHA256 == "" {
		// Put there by another tool, or unreadable metadata: nothing to
		// check its bytes by.
		body.Close()
		return nil, fmt.Errorf("%s: %s has no sha256: %w", sharedSource, job.Rel, store.ErrNotFound)
	}
	if f.catalog != nil {
		if want, ok := f.catalog.Expect(job.Rel); ok && (meta.Size != want.Size || want.SHA256 != "" && meta.SHA256 != want.SHA256) {
			body.Close()
			return nil, fmt.Errorf("%s: %s is %d bytes with sha256 %s, the database says %d and %s: %w",
				sharedSource, job.Rel, meta.Size, meta.SHA256, want.Size, want.SHA256, errNotTheFile)
		}
	}
	return &upstream.Response{
		Status:       200,
		Size:         meta.Size,
		LastModified: meta.LastModified,
		ETag:         meta.ETag,
		Mirror:       sharedSource,
		Body:         readCloser{store.CheckedReader(job.Rel, body, meta), body},
	}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// maxPendingShares bounds the uploads waiting for a slot: a sync that
// commits thousands of files does not make as many goroutines. A file
// left out is fetched upstream by the next node that wants it.
const maxPendingShares = 256

// Reshare is told of a hit on an immutable file that the tree does not
// know to be in the shared storage (store.Meta.Shared false): a file
// fetched before the node had a bucket, whose upload failed or was cut,
// or that came from its owner. It is put there, or found there and
// marked, in the background. Cheap when there is nothing to do: the hit
// path calls it.
func (f *Fetcher) Reshare(rel string, m store.Meta) {
	if f.shared == nil || m.Shared || m.SHA256 == "" || time.Now().UnixNano() < f.shareBackoff.Load() {
		return
	}
	f.share(rel, m, m.Size)
}

// shareBackoff is how long uploads wait after one failed, so that hits on
// unshared files do not each try a storage that is down.
const shareBackoff = 30 * time.Second

// share puts a file of the tree into the shared store, in the background:
// the clients of the flight that fetched it do not wait for the upload. A
// node that dies before it is done leaves the store without the file;
// the next hit on it (Reshare) tries again. Once the storage has it, the
// tree's copy is marked (store.MarkShared; not while a Batch has yet to
// make it durable), and its hits may be redirected there.
func (f *Fetcher) share(rel string, m store.Meta, size int64) {
	if f.bg.Err() != nil {
		return // shut down
	}
	if _, busy := f.sharingFiles.LoadOrStore(rel, true); busy {
		return
	}
	if f.pendingShares.Add(1) > maxPendingShares {
		f.pendingShares.Add(-1)
		f.sharingFiles.Delete(rel)
		f.log.Debug("share with the storage: too many waiting, skipped", "file", rel)
		return
	}
	f.sharing.Go(func() {
		defer f.pendingShares.Add(-1)
		defer f.sharingFiles.Delete(rel)
		select {
		case f.shareSlots <- struct{}{}:
			defer func() { <-f.shareSlots }()
		case <-f.bg.Done():
			return
		}
		ctx, cancel := context.WithTimeout(f.bg, shareTimeout)
		defer cancel()
		want := store.ObjectMeta{Size: size, SHA256: m.SHA256, ETag: m.ETag, LastModified: m.LastModified}
		if err := f.putShared(ctx, rel, want); err != nil {
			f.shareBackoff.Store(time.Now().Add(shareBackoff).UnixNano())
			f.log.Warn("share with the storage", "file", rel, "err", err)
			return
		}
		if _, err := f.store.MarkShared(rel); err != nil {
			f.log.Warn("share with the storage: record", "file", rel, "err", err)
		}
	})
}

// putShared uploads the tree's rel as want, unless the storage has it
// (one HEAD first: a node that got the file from its owner finds it
// there without sending it). A copy already there counts only if it is
// the same file.
func (f *Fetcher) putShared(ctx context.Context, rel string, want store.ObjectMeta) error {
	same := func(got store.ObjectMeta) error {
		if got.Size != want.Size || got.SHA256 != want.SHA256 {
			return fmt.Errorf("%s holds another copy of %s (%d bytes, sha256 %q; this node's is %d, %s)", sharedSource, rel, got.Size, got.SHA256, want.Size, want.SHA256)
		}
		return nil
	}
	got, err := f.shared.Stat(ctx, rel)
	if err == nil {
		return same(got)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	file, err := f.store.Open(rel)
	if err != nil {
		return err
	}
	defer file.Close()
	err = f.shared.PutIfAbsent(ctx, rel, file, want)
	if errors.Is(err, store.ErrExists) {
		got, err := f.shared.Stat(ctx, rel)
		if err != nil {
			return err
		}
		return same(got)
	}
	if err == nil {
		f.shares.Inc()
	}
	return err
}
