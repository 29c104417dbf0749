// Package lockfree coalesces concurrent fetches of the same file into one
// flight: a single fill writes the upstream bytes to a temp file while any
// number of readers follow it as it grows, without locks on the hot path.
//
// It imports nothing of the project and knows nothing of HTTP, mirrors or
// the store: the fill (internal/fetch, for the proxy and the sync) owns those. A fill
// belongs to its flight, not to a request: no reader can cancel it.
package lockfree
