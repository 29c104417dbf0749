// Package fastpath serves the requests that dominate a busy cache, a
// keep-alive HTTP/1.1 GET of a cached file, plain or with If-Modified-Since
// or If-None-Match (pacman -Sy revalidating its databases), without
// net/http, and hands every other connection, unread bytes included, to
// an http.Server, under the same header and idle timeouts.
//
// net/http costs about twice nginx's CPU per small response (a Request, a
// Header map, a bufio pair and a goroutine handoff per request); this loop
// parses a strict subset of HTTP/1.1 and answers with one writev(2). Any
// request it does not fully understand goes to net/http, so it is never
// more lenient than net/http.
package fastpath
