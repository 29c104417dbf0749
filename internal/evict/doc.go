// Package evict is the cache's policy: which files of the tree may go
// (packages and their signatures in proxy repos; never a mirror's or a
// hosted repo's, never a database), how many versions of a package are
// kept (cache.keep_versions, like paccache -rk, sparing what the current
// database names), and the size bound (cache.max_size, least recently
// used first). It reads the catalog and removes through the store.
package evict
