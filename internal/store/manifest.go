package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// A manifest is a small JSON object in a cluster's bucket that names
// files kept under their sha256 (the databases a mirror repo's sync or a
// hosted repo's publisher shares: internal/sync, internal/hosted). Each
// writer replaces it whole, only if it is still the version it read, so
// that of two writers that read the same one only one wins. A manifest
// keeps the files of the one before it (a node may still be copying
// them) and its writer deletes those of the one before that.

// ManifestFile is one file a manifest names, as its copies in the bucket
// carry it.
type ManifestFile struct {
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	ETag         string    `json:"etag,omitempty"`
	LastModified time.Time `json:"last_modified,omitzero"`
}

// ObjectMeta is what travels with the file's copies in the bucket.
func (f ManifestFile) ObjectMeta() ObjectMeta {
	return ObjectMeta{Size: f.Size, SHA256: f.SHA256, ETag: f.ETag, LastModified: f.LastModified}
}

// ManifestBucket is what reading and replacing a manifest needs of a
// store.Objects.
type ManifestBucket interface {
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectMeta, error)
	PutIfAbsent(ctx context.Context, key string, r io.Reader, meta ObjectMeta) error
	PutIfMatch(ctx context.Context, key string, r io.Reader, meta ObjectMeta, version string) (string, error)
}

// ReadManifest decodes the manifest at key into m, reading at most max
// bytes of it, and returns its version: "" when there is none. ok is
// false when there is one that does not decode or is over max: whoever
// can write the bucket may have put it there, and the next write
// replaces it.
func ReadManifest(ctx context.Context, b ManifestBucket, key string, max int64, m any) (version string, ok bool, err error) {
	body, meta, err := b.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the manifest %s: %w", key, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return "", false, fmt.Errorf("read the manifest %s: %w", key, err)
	}
	if int64(len(data)) > max || json.Unmarshal(data, m) != nil {
		return meta.Version, false, nil
	}
	return meta.Version, true, nil
}

// WriteManifest puts m at key if key still holds version, or nothing
// when version is "": ErrVersionMismatch or ErrExists when another
// writer came first.
func WriteManifest(ctx context.Context, b ManifestBucket, key string, m any, version string) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	meta := BytesMeta(data)
	if version == "" {
		err = b.PutIfAbsent(ctx, key, bytes.NewReader(data), meta)
	} else {
		_, err = b.PutIfMatch(ctx, key, bytes.NewReader(data), meta, version)
	}
	if err != nil {
		return fmt.Errorf("write the manifest %s: %w", key, err)
	}
	return nil
}

// Succession is what a manifest that names files replaces one that
// named before and kept beforePrevious: previous, the sha256s it keeps
// for the readers of the one it replaces (sorted, each once); and drop,
// those of beforePrevious it keeps no more, to delete once it is
// written.
func Succession(before map[string]ManifestFile, beforePrevious []string, files map[string]ManifestFile) (previous, drop []string) {
	for _, f := range before {
		previous = append(previous, f.SHA256)
	}
	slices.Sort(previous)
	previous = slices.Compact(previous)
	named := func(sum string) bool {
		for _, f := range files {
			if f.SHA256 == sum {
				return true
			}
		}
		return false
	}
	for _, sum := range beforePrevious {
		if !named(sum) && !slices.Contains(previous, sum) && !slices.Contains(drop, sum) {
			drop = append(drop, sum)
		}
	}
	return previous, drop
}
