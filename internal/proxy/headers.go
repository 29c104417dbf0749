package proxy

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/fastpath"
	"github.com/mirrord/mirrord/internal/store"
)

// The header of a file from the tree, rendered for each serving path:
// into net/http's header map (setFileHeaders, then setLengthHeaders or
// http.ServeContent) and as bytes for the fast path (appendFileHeaders).
// The two must send the same fields; TestFastPathMatchesServeHTTP
// compares them response by response.

// Shared header values: assigning a slice costs no allocation per request.
var (
	contentTypeOctet = []string{"application/octet-stream"}
	cacheNoCache     = []string{"no-cache"}
	cacheImmutable   = []string{"public, max-age=31536000, immutable"}
	acceptRanges     = []string{"bytes"}
)

// cacheControl is the Cache-Control of a file: a mutable one (a database,
// a signature of one, a sync stamp; catalog.Target.Mutable) is
// revalidated by clients, a package is cached for good.
func cacheControl(mutable bool) []string {
	if mutable {
		return cacheNoCache
	}
	return cacheImmutable
}

// setFileHeaders sets what every response for a file carries. The
// Content-Type is explicit so that ServeContent never sniffs, and no
// Content-Encoding is ever set: pacman checksums the bytes as sent.
func setFileHeaders(hd http.Header, t catalog.Target) {
	hd["Content-Type"] = contentTypeOctet
	hd["Cache-Control"] = cacheControl(t.Mutable())
}

// setLengthHeaders sets what http.ServeContent would for a whole file.
func setLengthHeaders(hd http.Header, modTime time.Time, size int64) {
	hd["Last-Modified"] = []string{modTime.UTC().Format(http.TimeFormat)}
	hd["Accept-Ranges"] = acceptRanges
	hd["Content-Length"] = []string{strconv.FormatInt(size, 10)}
}

// appendFileHeaders appends the fields net/http's path sends for the
// whole file m (mutable as its Target says) (setFileHeaders and setLengthHeaders), or those of them
// that its 304 keeps (Cache-Control, Last-Modified), in the order
// net/http writes them (sorted by name), each ending in "\r\n".
func appendFileHeaders(dst []byte, mutable bool, m store.Meta, notModified bool) []byte {
	if !notModified {
		dst = append(dst, "Accept-Ranges: "...)
		dst = append(dst, acceptRanges[0]...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Cache-Control: "...)
	dst = append(dst, cacheControl(mutable)[0]...)
	if !notModified {
		dst = append(dst, "\r\nContent-Length: "...)
		dst = strconv.AppendInt(dst, m.Size, 10)
		dst = append(dst, "\r\nContent-Type: "...)
		dst = append(dst, contentTypeOctet[0]...)
	}
	dst = append(dst, "\r\nLast-Modified: "...)
	dst = fastpath.AppendDate(dst, m.LastModified)
	return append(dst, "\r\n"...)
}
