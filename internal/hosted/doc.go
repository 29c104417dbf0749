// Package hosted publishes packages into hosted repos: an upload is staged
// and fsynced, recorded as a job in the store's key-value API, then a pool
// of workers checks it and moves it into the tree, and one debounced
// builder per repo/arch rebuilds {repo}.db and {repo}.files from the
// package index (never by re-reading the packages).
//
// Each repo's index is owned by one goroutine (its actor): publishes of the
// same name are ordered there, with vercmp, and no lock is held across I/O.
// The publish state (index entries, dirty and retired-file marks, jobs)
// goes through one small interface, records: the store's key-value API
// on a single node; bucketRecords keeps it in a cluster's bucket, so that
// another node can carry on publishing (docs/CLUSTER.md). In a cluster
// the checks of the jobs are not the publisher's workers' but every
// node's Checker's, and the publisher commits their results (checker.go);
// the Follower keeps the other nodes' copies of the databases it shares.
//
// It does not speak HTTP: internal/api maps its errors to statuses.
package hosted
