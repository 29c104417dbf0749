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
		wantIMS   string
		wantINM   string
	}{
		{"wrk", "GET " + pkg + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", true, false, "", ""},
		{"pacman", "GET " + pkg + " HTTP/1.1\r\nHost: mirror.lan:8080\r\nUser-Agent: pacman/6.0.2 (Linux x86_64) libalpm/13.0.2\r\nAccept: */*\r\n\r\n", true, false, "", ""},
		{"names in any case", "GET " + pkg + " HTTP/1.1\r\nhOsT: x\r\nUSER-AGENT: curl/8\r\nconnection: Keep-Alive\r\n\r\n", true, false, "", ""},
		{"connection close", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true, true, "", ""},
		{"no-cache", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n\r\n", true, false, "", ""},
		{"value spacing", "GET " + pkg + " HTTP/1.1\r\nHost:x\r\nAccept: \t*/* \r\n\r\n", true, false, "", ""},
		{"ipv6 host", "GET " + pkg + " HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true, false, "", ""},

		{"head", "HEAD " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"post", "POST " + pkg + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", false, false, "", ""},
		{"lower-case method", "get " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"http/1.0", "GET " + pkg + " HTTP/1.0\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, false, "", ""},
		{"absolute form", "GET http://x" + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"asterisk", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"query", "GET " + pkg + "?a=b HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"escape", "GET /archlinux/core/os/x86_64/a%2fb HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"fragment", "GET " + pkg + "#x HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"two spaces", "GET  " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"utf-8 path", "GET /ä HTTP/1.1\r\nHost: x\r\n\r\n", false, false, "", ""},
		{"range", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", false, false, "", ""},
		{"if-modified-since", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n", true, false, "Mon, 02 Jan 2006 15:04:05 GMT", ""},
		{"if-none-match", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nif-none-match:  \"a\", W/\"b\" \r\n\r\n", true, false, "", `"a", W/"b"`},
		{"both conditions", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nIf-Modified-Since: x\r\n\r\n", true, false, "x", "*"},
		{"two if-modified-since", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: \r\nIf-Modified-Since: x\r\n\r\n", false, false, "", ""},
		{"two if-none-match", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nIf-None-Match: *\r\n\r\n", false, false, "", ""},
		{"if-range", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Range: \"a\"\r\n\r\n", false, false, "", ""},
		{"if-match", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Match: *\r\n\r\n", false, false, "", ""},
		{"if-unmodified-since", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n", false, false, "", ""},
		{"content-length", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", false, false, "", ""},
		{"transfer-encoding", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, "", ""},
		{"expect", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", false, false, "", ""},
		{"upgrade", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false, false, "", ""},
		{"authorization", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n", false, false, "", ""},
		{"unknown header", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", false, false, "", ""},
		{"no host", "GET " + pkg + " HTTP/1.1\r\n\r\n", false, false, "", ""},
		{"empty host", "GET " + pkg + " HTTP/1.1\r\nHost: \r\n\r\n", false, false, "", ""},
		{"two hosts", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false, false, "", ""},
		{"bad host", "GET " + pkg + " HTTP/1.1\r\nHost: x/y\r\n\r\n", false, false, "", ""},
		{"space before colon", "GET " + pkg + " HTTP/1.1\r\nHost : x\r\n\r\n", false, false, "", ""},
		{"no colon", "GET " + pkg + " HTTP/1.1\r\nHost x\r\n\r\n", false, false, "", ""},
		{"folded line", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\r\n b\r\n\r\n", false, false, "", ""},
		{"bare lf in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\nb\r\n\r\n", false, false, "", ""},
		{"bare cr in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\rb\r\n\r\n", false, false, "", ""},
		{"nul in value", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: a\x00b\r\n\r\n", false, false, "", ""},
		{"obs-text", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nAccept: \xff\r\n\r\n", false, false, "", ""},
		{"connection other", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n", false, false, "", ""},
		{"lf only", "GET " + pkg + " HTTP/1.1\nHost: x\n\n", false, false, "", ""},
		{"lf ending the head", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\n\n", false, false, "", ""},
		{"lf ending a line", "GET " + pkg + " HTTP/1.1\r\nHost: x\n\r\n", false, false, "", ""},
		{"trailing bytes", "GET " + pkg + " HTTP/1.1\r\nHost: x\r\n\r\nX", false, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, ok := parseHead([]byte(tt.head))
			if ok != tt.wantOK {
				t.Fatalf("parseHead(%q) ok = %v, want %v", tt.head, ok, tt.wantOK)
			}
			if ok && (string(req.path) != pkg || req.close != tt.wantClose || string(req.ims) != tt.wantIMS || string(req.inm) != tt.wantINM) {
				t.Errorf("parseHead(%q) = %q close=%v ims=%q inm=%q, want %q close=%v ims=%q inm=%q",
					tt.head, req.path, req.close, req.ims, req.inm, pkg, tt.wantClose, tt.wantIMS, tt.wantINM)
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

func TestHeadEnd(t *testing.T) {
	tests := []struct {
		head string // a whole head, or "" for none
		rest string // what follows it
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"GET / HTTP/1.1\nHost: x\n\n", ""},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: x\r\n\n", "rest"},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"},
		{"\r\n", "GET"}, // an empty request line: net/http refuses it at once
		{"\n", ""},
		{"", "GET / HTTP/1.1\r\nHost: x\r\n"},
		{"", "GET / HTTP/1.1\r\nHost: x\r\n\r"},
		{"", "GET / HTTP/1.1\r\nHost: x\r\r\n"}, // "x\r\r" is no empty line
		{"", "GET / HTTP/1.1\r\nHost: x\r\n \r\n"},
		{"", ""},
	}
	for _, tt := range tests {
		in := tt.head + tt.rest
		if n, _ := headEnd([]byte(in), 0); n != len(tt.head) {
			t.Errorf("headEnd(%q) = %d, want %d", in, n, len(tt.head))
		}
		// Scanning a head as it trickles in finds the same end.
		n, next := 0, 0
		for i := 1; i <= len(in) && n == 0; i++ {
			n, next = headEnd([]byte(in[:i]), next)
		}
		if n != len(tt.head) {
			t.Errorf("headEnd(%q) byte by byte = %d, want %d", in, n, len(tt.head))
		}
	}
}

// FuzzParseHead checks the fast path against net/http: whatever it
// accepts, net/http reads as the same GET of the same path, with nothing
// that would change the answer but the two conditions it reads the same;
// it never panics; and where headEnd says a head ends, net/http reads a
// head that ends there too (else a hand-off would leave net/http waiting
// for the rest under a deadline of its own).
func FuzzParseHead(f *testing.F) {
	f.Add("GET /archlinux/core/os/x86_64/core.db HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: */*\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=1-\r\n\r\n")
	f.Add("GET /a%2f HTTP/1.1\r\nhost: x\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nIf-None-Match: \t\"a\", *\r\n\r\n")
	f.Add("GET /a HTTP/1.1\nHost: x\n\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\n\n")
	f.Fuzz(func(t *testing.T, head string) {
		n, _ := headEnd([]byte(head), 0)
		if n != len(head) {
			return // readHead hands parseHead exactly one complete head
		}
		r, rerr := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if rerr == nil && r.ContentLength <= 0 && len(r.TransferEncoding) == 0 {
			// A head net/http reads must end where headEnd says: nothing of
			// it may be left unread (it would be read as the next request).
			br := bufio.NewReader(strings.NewReader(head + "\x00"))
			if _, err := http.ReadRequest(br); err == nil {
				if b, _ := br.ReadByte(); b != 0 {
					t.Fatalf("headEnd(%q) = %d, net/http reads a head of another length", head, n)
				}
			}
		}
		req, ok := parseHead([]byte(head))
		if !ok {
			return
		}
		if rerr != nil {
			t.Fatalf("parseHead accepted %q, net/http refuses it: %v", head, rerr)
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
		for _, k := range []string{"Range", "If-Range", "If-Match", "If-Unmodified-Since", "Expect", "Upgrade", "Authorization"} {
			if _, found := r.Header[k]; found {
				t.Fatalf("parseHead accepted %q with %s", head, k)
			}
		}
		for _, c := range []struct {
			name string
			got  []byte
		}{{"If-Modified-Since", req.ims}, {"If-None-Match", req.inm}} {
			if len(r.Header[c.name]) > 1 || r.Header.Get(c.name) != string(c.got) {
				t.Fatalf("parseHead(%q) %s = %q, net/http %q", head, c.name, c.got, r.Header[c.name])
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
