// Package faultserver is a fake upstream mirror for tests: it serves a
// directory like a static mirror (GET, HEAD, Range, If-Modified-Since, ETag)
// and injects faults per path at run time (status codes, resets, short or
// corrupt bodies, stalls held by a gate, trickles, chunked encoding, ignored
// Range, wrong 304s) while counting and logging every request.
//
// It imports nothing of the project; every package's tests may import it.
package faultserver
