package fastpath

import "bytes"

// request is what the fast path needs of a request head.
type request struct {
	path  []byte // the request target, an absolute path without query
	close bool   // "Connection: close": answer, then close
	ims   []byte // the If-Modified-Since value, trimmed; empty if absent
	inm   []byte // the If-None-Match value, trimmed; empty if absent
	ua    []byte // the User-Agent value, trimmed, for the access log
}

const (
	seenIMS = 1 << iota
	seenINM
)

// parseHead parses head, a complete request head ending in "\r\n\r\n".
// ok is false unless the request is one the fast path answers: a GET, HTTP/1.1,
// an absolute path with no query or escape, exactly one plain Host, and
// only headers that do not change the answer but for the two conditions
// a cache revalidates with (If-Modified-Since, If-None-Match, each at most
// once; see Request.NotModified). Anything else, valid or not,
// goes to net/http, which decides; the fast path never accepts what
// net/http would refuse.
func parseHead(head []byte) (req request, ok bool) {
	// The request line, then each field line to its CRLF, each looked
	// at once where it is read (no Cut, Trim or cutset per line): this
	// runs for every request the fast path answers.
	const proto = " HTTP/1.1\r\n"
	if len(head) < 4 || string(head[:4]) != "GET " {
		return req, false
	}
	i := 4
	for ; i < len(head); i++ {
		// '%' (escapes), '?' (query) and '#' are left to net/http, which
		// decodes them; so is anything outside visible ASCII.
		if c := head[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' {
			break
		}
	}
	req.path = head[4:i]
	if len(req.path) == 0 || req.path[0] != '/' || len(head)-i < len(proto) || string(head[i:i+len(proto)]) != proto {
		return req, false
	}
	rest := head[i+len(proto):]
	hosts := 0
	var seen uint8 // conditions seen, even with an empty value
	for {
		if len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n' {
			rest = rest[2:] // the blank line ending the head
			break
		}
		// The name: letters, digits and '-' (a strict subset of RFC
		// 9110's token), then ':'.
		n := 0
		for n < len(rest) && isNameByte(rest[n]) {
			n++
		}
		if n == 0 || n == len(rest) || rest[n] != ':' {
			return req, false
		}
		name := rest[:n]
		v := bytes.IndexByte(rest[n+1:], '\r') + n + 1 // the value ends at CRLF
		if v == n || len(rest)-v < 2 || rest[v+1] != '\n' || !validValue(rest[n+1:v]) {
			return req, false
		}
		value := trimSpace(rest[n+1 : v]) // spaces and tabs: validValue let no CR or LF through
		rest = rest[v+2:]
		var lower [20]byte
		switch string(toLower(lower[:0], name)) { // compared without allocating
		case "host":
			hosts++
			if !validHost(value) {
				return req, false
			}
		case "connection":
			switch {
			case bytes.EqualFold(value, []byte("keep-alive")):
			case bytes.EqualFold(value, []byte("close")):
				req.close = true
			default:
				return req, false
			}
		case "if-modified-since":
			if seen&seenIMS != 0 {
				return req, false // net/http would read the first only
			}
			seen |= seenIMS
			req.ims = value
		case "if-none-match":
			if seen&seenINM != 0 {
				return req, false
			}
			seen |= seenINM
			req.inm = value
		case "user-agent":
			req.ua = value
		case "accept", "accept-encoding", "accept-language", "cache-control", "pragma":
			// Informational for a file that is sent whole and unencoded.
		default:
			// Range, If-Range and the other conditions, bodies, upgrades,
			// anything unknown.
			return req, false
		}
	}
	return req, hosts == 1 && len(rest) == 0
}

var crlf = []byte("\r\n")

// headEnd returns the length of the request head that b starts with: up
// to and including its first empty line, which ends in "\r\n" or, as
// net/http also reads it, a bare "\n"; 0 while b holds no empty line.
// from is where the last call left off (its next), so that a head that
// trickles in is not scanned again from the start.
func headEnd(b []byte, from int) (n, next int) {
	start := from // where the line being scanned starts
	for {
		i := bytes.IndexByte(b[start:], '\n')
		if i < 0 {
			return 0, start
		}
		if i == 0 || i == 1 && b[start] == '\r' {
			return start + i + 1, start + i + 1
		}
		start += i + 1
	}
}

// isNameByte reports whether c may be in a header name the fast path
// reads: a letter, a digit or '-'.
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// validValue accepts visible ASCII, spaces and tabs; no control byte
// (a lone CR or LF included) and no obs-text.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts a non-empty host[:port] of letters, digits and
// ".-:[]_": what a client puts there, and a subset of what net/http allows.
func validHost(b []byte) bool {
	if len(b) == 0 || len(b) > 255 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// toLower appends the ASCII lower-case form of name to dst, or nothing
// when name is longer than dst's capacity (longer than any known name).
func toLower(dst, name []byte) []byte {
	if len(name) > cap(dst)-len(dst) {
		return dst
	}
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
