package hosted

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// records is where the publish state is kept: the index entries, the
// dirty and retired-file marks and the jobs, each a small value under a
// key. A single node keeps them in its store's key-value API
// (*store.Store); a cluster is to keep them in the bucket
// (bucketRecords), so that whichever node publishes next finds them.
type records interface {
	// Get is the value under key, or store.ErrNotFound.
	Get(key string) ([]byte, error)
	Put(key string, val []byte) error
	// Delete removes key; a key that holds nothing is not an error.
	Delete(key string) error
	// Scan calls fn for every key that starts with prefix, in byte
	// order, with the prefix stripped; fn must not keep val.
	Scan(prefix string, fn func(key string, val []byte) error) error
}

// maxRecord bounds what is read of a record: a job or an index entry is
// a few KiB (a package's depends and provides); whoever can write the
// bucket must not make a node read without end.
const maxRecord = 1 << 20

// recordTimeout bounds each request of bucketRecords: the actor waits on
// them, and a bucket that does not answer must fail the publish, not
// hang it.
const recordTimeout = 30 * time.Second

// bucketRecords keeps records as objects under prefix, one per key
// ("_mirrord/hosted/" + "job/{id}"). Each Put replaces its object whole,
// so a reader sees one value or the other; Scan lists, then reads each
// object (one request per record: fine for the hundreds of packages of
// a hosted repo, read once when a node takes over publishing).
type bucketRecords struct {
	objs   Bucket
	prefix string
	hold   context.Context // Options.Hold: no write once it ends; nil never ends
}

// context bounds one request by recordTimeout and by the hold.
func (b bucketRecords) context() (context.Context, context.CancelFunc) {
	hold := b.hold
	if hold == nil {
		hold = context.Background()
	}
	return context.WithTimeout(hold, recordTimeout)
}

func (b bucketRecords) Get(key string) ([]byte, error) {
	ctx, cancel := b.context()
	defer cancel()
	return b.get(ctx, b.prefix+key)
}

func (b bucketRecords) get(ctx context.Context, key string) ([]byte, error) {
	body, _, err := b.objs.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	val, err := io.ReadAll(io.LimitReader(body, maxRecord+1))
	if err != nil {
		return nil, fmt.Errorf("read record %s: %w", key, err)
	}
	if len(val) > maxRecord {
		return nil, fmt.Errorf("record %s: over %d bytes", key, maxRecord)
	}
	return val, nil
}

func (b bucketRecords) Put(key string, val []byte) error {
	ctx, cancel := b.context()
	defer cancel()
	if err := held(ctx); err != nil {
		return err
	}
	return b.objs.Put(ctx, b.prefix+key, bytes.NewReader(val), store.BytesMeta(val))
}

func (b bucketRecords) Delete(key string) error {
	ctx, cancel := b.context()
	defer cancel()
	if err := held(ctx); err != nil {
		return err
	}
	return b.objs.Delete(ctx, b.prefix+key)
}

func (b bucketRecords) Scan(prefix string, fn func(key string, val []byte) error) error {
	ctx, cancel := b.context()
	keys, err := b.objs.List(ctx, b.prefix+prefix)
	cancel()
	if err != nil {
		return err
	}
	for _, key := range keys {
		ctx, cancel := b.context()
		val, err := b.get(ctx, key)
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return err
		}
		if err := fn(strings.TrimPrefix(key, b.prefix+prefix), val); err != nil {
			return err
		}
	}
	return nil
}
