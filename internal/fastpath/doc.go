// Package fastpath serves the requests that dominate a busy cache, a
// keep-alive HTTP/1.1 GET of a cached file, plain or with If-Modified-Since
// or If-None-Match (pacman -Sy revalidating its databases), without
// net/http, and hands every other connection, unread bytes included, to
// an http.Server, under the same header and idle timeouts.
//
// net/http costs about twice nginx's CPU per small response (a Request, a
// Header map, a bufio pair, a goroutine that parks after every response);
// here a few epoll event loops, one per P, own the connections, parse a
// strict subset of HTTP/1.1 and answer with one writev(2) or sendfile(2).
// Any request they do not fully understand goes to net/http, so the fast
// path is never more lenient than net/http.
package fastpath
