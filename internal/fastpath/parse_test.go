package fastpath

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseHead(t *testing.T) {
	const pkg = "/archlinux/core/os/x86_64/zlib-1.3-1-x86_64.pkg.tar.zst"
	tests := []struct {
		name      string
		head      string
		wantOK    bool
		wantClose bool
	}{
		{"wrk", "GET " + pkg + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", true, false},
		{"pacman", "GET " + pkg + " HTTP/1.1\r\nHost: mirror.lan:8080\r\nUser-Agent: pacman/6.0.2 (Linux x86_64) libalpm/13.0.2\r\nAccept: */*\r\n\r\n", true, false},
		{"names in any case", "GET " + pkg + " HTTP/1.1\r\nhOsT: x\r\nUSER-AGENT: curl/8\r\nconnection: Keep-Alive\r\n\r\n", true, false},
		{"connection close", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true, true},
		{"no-cache", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n\r\n", true, false},
		{"value spacing", "GET " + pkg + " HTTP/1.1\r\nHost:x\r\nAccept: \t*/* \r\n\r\n", true, false},
		{"ipv6 host", "GET " + pkg + " HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true, false},

		{"head", "HEAD " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"post", "POST " + pkg + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", false, false},
		{"lower-case method", "get " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"http/1.0", "GET " + pkg + " HTTP/1.0\r\nHost: x\r\n\r\n", false, false},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, false},
		{"absolute form", "GET http://x" + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"asterisk", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"query", "GET " + pkg + "?a=b HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"escape", "GET /archlinux/core/os/x86_64/a%2fb HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"fragment", "GET " + pkg + "#x HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"two spaces", "GET  " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"utf-8 path", "GET /ä HTTP/1.1\r\nHost: x\r\n\r\n", false, false},
		{"range", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", false, false},
		{"if-modified-since", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n", false, false},
		{"if-none-match", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\n\r\n", false, false},
		{"content-length", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", false, false},
		{"transfer-encoding", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"expect", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", false, false},
		{"upgrade", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false, false},
		{"authorization", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n", false, false},
		{"unknown header", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", false, false},
		{"no host", "GET " + pkg + " HTTP/1.1\r\n\r\n", false, false},
		{"empty host", "GET " + pkg + " HTTP/1.1\r\nHost: \r\n\r\n", false, false},
		{"two hosts", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false, false},
		{"bad host", "GET " + pkg + " HTTP/1.1\r\nHost: x/y\r\n\r\n", false, false},
		{"space before colon", "GET " + pkg + " HTTP/1.1\r\nHost : x\r\n\r\n", false, false},
		{"no colon", "GET " + pkg + " HTTP/1.1\r\nHost x\r\n\r\n", false, false},
		{"folded line", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\r\n b\r\n\r\n", false, false},
		{"bare lf in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\nb\r\n\r\n", false, false},
		{"bare cr in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\rb\r\n\r\n", false, false},
		{"nul in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\x00b\r\n\r\n", false, false},
		{"obs-text", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: \xff\r\n\r\n", false, false},
		{"connection other", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n", false, false},
		{"lf only", "GET " + pkg + " HTTP/1.1\nHost: x\n\n", false, false},
		{"trailing bytes", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\nX", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, ok := parseHead([]byte(tt.head))
			if ok != tt.wantOK {
				t.Fatalf("parseHead(%q) ok = %v, want %v", tt.head, ok, tt.wantOK)
			}
			if ok && (string(req.path) != pkg || req.close != tt.wantClose) {
				t.Errorf("parseHead(%q) = %q close=%v, want %q close=%v", tt.head, req.path, req.close, pkg, tt.wantClose)
			}
		})
	}
}

func TestParseHeadAllocs(t *testing.T) {
	head := []byte("GET /a/b HTTP/1.1\r\nHost: x\r\nUser-Agent: pacman\r\nAccept: */*\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { parseHead(head) }); n != 0 {
		t.Errorf("parseHead allocates %v times, want 0", n)
	}
}

// FuzzParseHead checks the fast path against net/http: whatever it
// accepts, net/http reads as the same GET of the same path, with nothing
// that would change the answer; and it never panics.
func FuzzParseHead(f *testing.F) {
	f.Add("GET /archlinux/core/os/x86_64/core.db HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: */*\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=1-\r\n\r\n")
	f.Add("GET /a%2f HTTP/1.1\r\nhost: x\r\n\r\n")
	f.Fuzz(func(t *testing.T, head string) {
		if !strings.HasSuffix(head, "\r\n\r\n") || strings.Count(head, "\r\n\r\n") != 1 {
			return // readHead hands parseHead exactly one complete head
		}
		req, ok := parseHead([]byte(head))
		if !ok {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			t.Fatalf("parseHead accepted %q, net/http refuses it: %v", head, err)
		}
		if r.Method != "GET" || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
			t.Fatalf("parseHead accepted %q: net/http reads %s HTTP/%d.%d", head, r.Method, r.ProtoMajor, r.ProtoMinor)
		}
		if r.URL.Path != string(req.path) || r.URL.RawQuery != "" {
			t.Fatalf("parseHead(%q) path %q, net/http %q?%q", head, req.path, r.URL.Path, r.URL.RawQuery)
		}
		if r.Host == "" || r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
			t.Fatalf("parseHead accepted %q: host %q, length %d, encoding %v", head, r.Host, r.ContentLength, r.TransferEncoding)
		}
		for _, k := range []string{"Range", "If-Modified-Since", "If-None-Match", "If-Range", "If-Match", "If-Unmodified-Since", "Expect", "Upgrade", "Authorization"} {
			if _, found := r.Header[k]; found {
				t.Fatalf("parseHead accepted %q with %s", head, k)
			}
		}
		if req.close != r.Close {
			t.Fatalf("parseHead(%q) close = %v, net/http %v", head, req.close, r.Close)
		}
		if !bytes.Equal(req.path, []byte(r.RequestURI)) {
			t.Fatalf("parseHead(%q) path %q, request URI %q", head, req.path, r.RequestURI)
		}
	})
}
