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
// A request that came from a peer is not sent on, and a failing owner or
// store costs a warning, not the request: upstream still has the file.
func (f *Fetcher) fillNearer(ctx context.Context, fl *lockfree.Flight, job Job) (done bool, err error) {
	if f.owners != nil && !job.FromPeer {
		if owner, self := f.owners.Owner(job.Rel); !self {
			resp, err := f.owners.Fetch(ctx, owner, job.Rel)
			if err == nil {
				defer resp.Body.Close()
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
	resp, err := f.fromShared(ctx, job)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			f.log.Warn("shared storage", "file", job.Rel, "err", err)
		}
		return false, nil
	}
	defer resp.Body.Close()
	err = f.copyAndCommit(ctx, fl, job, resp, fromShared)
	if errors.Is(err, ErrVerify) || errors.Is(err, store.ErrBadBody) {
		// Corrupt, or not the file the database names: gone, so that
		// the next try fetches it upstream.
		f.log.Warn("bad copy in the shared storage: deleted", "file", job.Rel, "err", err)
		f.shared.Delete(context.WithoutCancel(ctx), job.Rel)
	}
	return true, err
}

// shareTimeout bounds one upload of a file to the shared store.
const shareTimeout = 30 * time.Minute

// fromShared opens job.Rel in the shared store as a Response, its body
// checked against the object's own size and sha256 (store.CheckedReader
// holds back the last byte until they match, so a corrupt object reaches
// no client whole). ErrNotFound: the store has no copy.
func (f *Fetcher) fromShared(ctx context.Context, job Job) (*upstream.Response, error) {
	body, meta, err := f.shared.Get(ctx, job.Rel)
	if err != nil {
		return nil, err
	}
	if meta.SHA256 == "" {
		// Put there by another tool, or unreadable metadata: nothing to
		// check it by but the catalog, which may not know the file.
		body.Close()
		return nil, fmt.Errorf("%s: %s has no sha256: %w", sharedSource, job.Rel, store.ErrNotFound)
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

// share puts a file just committed to the tree into the shared store, in
// the background: the clients of the flight that fetched it do not wait
// for the upload. A node that dies before it is done leaves the store
// without the file, which the next node to want it fetches upstream.
//
// record marks the tree's copy as shared once it is (store.Meta.Shared).
// It is false for a file committed through a Batch, whose record may not
// reach badger before the Batch has synced its bytes.
func (f *Fetcher) share(rel string, m store.Meta, size int64, record bool) {
	f.sharing.Go(func() {
		select {
		case f.shareSlots <- struct{}{}:
			defer func() { <-f.shareSlots }()
		case <-f.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
		defer cancel()
		go func() {
			select {
			case <-f.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		file, err := f.store.Open(rel)
		if err != nil {
			f.log.Warn("share with the storage: open", "file", rel, "err", err)
			return
		}
		defer file.Close()
		err = f.shared.PutIfAbsent(ctx, rel, file, store.ObjectMeta{Size: size, SHA256: m.SHA256, ETag: m.ETag, LastModified: m.LastModified})
		if err != nil && !errors.Is(err, store.ErrExists) {
			f.log.Warn("share with the storage", "file", rel, "err", err)
			return
		}
		f.shares.Inc()
		// Known to be there: its hits may be redirected there.
		if m, err := f.store.Stat(rel); record && err == nil && !m.Shared {
			m.Shared = true
			if err := f.store.SetMeta(rel, m); err != nil {
				f.log.Warn("share with the storage: record", "file", rel, "err", err)
			}
		}
	})
}
