// Package proxy is the HTTP handler for the tree: it resolves
// /{distro}/{layout}/{file} against the configured repos, serves files that
// are present (hit), and for proxy repos fetches misses from upstream
// through one shared single-flight (internal/lockfree), revalidates mutable
// files, and verifies what it caches.
//
// It never touches the filesystem itself: every file goes through
// internal/store.
package proxy
