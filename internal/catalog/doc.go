// Package catalog is what mirrord knows of its configured repos, built
// once from the config and shared by every flow: the routing of URL paths
// to a distro, repo, arch and file (Router), each repo's mirror set
// (upstream health shared per mirror, whoever asks: proxy, sync, HEAD;
// replaced whole when its upstreams_file changes, Watcher),
// and each repo folder's current database, parsed once per committed
// version (DB), with what the packages of a database about to be
// published must be (Expecting) and what the cache must keep (Pinned).
//
// It reads the tree through internal/store and never writes it; it
// imports no serving package.
package catalog
