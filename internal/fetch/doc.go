// Package fetch moves files from upstream mirrors into the tree through the
// one single-flight registry that the proxy and the mirror sync share: one
// download per file however many clients and syncs want it, streamed to
// every reader while it is written, checked (length, and size and sha256
// when a database names the file) before it enters the tree.
package fetch
