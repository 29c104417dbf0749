// Package objtest is the one compliance suite of store.Objects: every
// backend's tests call Run, so that each keeps the same promises (an
// object is visible complete or not at all, a failed Put leaves nothing,
// PutIfAbsent and PutIfMatch win once, a stale version is refused,
// listings match).
//
// Only tests import it.
package objtest
