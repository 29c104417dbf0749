// Package store owns mirrord's data directory: the tree of served files
// (written temp file, fsync, rename, fsync dir, so a file in the tree is
// always complete), the badger metadata beside it, an in-memory index with
// batched last-access times (read by internal/evict, the cache policy),
// and small files kept in memory for the hit path.
//
// It also keeps staging/, where files wait durably for their caller to
// put them in the tree (internal/hosted's acknowledged uploads; see
// staging.go), so that they too are written only here.
//
// For a cluster's bucket it declares the object storage (Objects, with
// fsobj and s3obj its backends) and the manifests the nodes share their
// databases by (manifest.go: replaced by compare-and-swap, the files of
// the one before kept), read and written alike by internal/sync and
// internal/hosted.
//
// Only this package imports badger; other packages keep their state through
// its small key-value API (Put, Get, Delete, Scan).
package store
