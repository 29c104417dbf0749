// Package sync keeps mirror-mode repos a full, consistent copy of their
// upstream: a Scheduler runs each repo every sync_interval (and on demand),
// and one sync fetches the databases into staging, downloads what they name
// through the fetcher the proxy shares (one download per file), verifies it,
// and only then publishes the databases, so a client never sees a database
// naming a file the tree lacks. Files no database names any more are pruned
// after sync.prune_after. It keeps its state in the store's KV under "sync/";
// it never imports badger and never serves HTTP.
package sync
