package fastpath

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A connection comes back to the fast path after a fallback response of
// known length, however often, pipelined or not, and keeps its unread bytes.
func TestReclaimAfterDelimitedResponse(t *testing.T) {
	e := newEnv(t, nil)
	e.mem["a"] = []byte("AAAA")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, sent by sendfile
	e.addFile("big", big)
	c := e.dial()
	br := bufio.NewReader(c)
	const rounds = 50
	for i := range rounds {
		reqs := []string{get("/len/x"), get("/mem/a")}
		if i%2 == 1 { // pipelined: net/http reads the hit along with its own request
			io.WriteString(c, reqs[0]+reqs[1])
		} else {
			io.WriteString(c, reqs[0])
		}
		resp, body := readResponse(t, br)
		if resp.Header.Get("X-Fallback") != "1" || body != `GET /len/x body=""` {
			t.Fatalf("round %d: fallback answered %q, %v", i, body, resp.Header)
		}
		if i%2 == 0 {
			io.WriteString(c, reqs[1])
		}
		resp, body = readResponse(t, br)
		if resp.Header.Get("X-Fallback") != "" || body != "AAAA" {
			t.Fatalf("round %d: hit answered by the fallback (%q), want the fast path", i, body)
		}
	}
	// A file served by net/http (sendfile through the handed-off conn),
	// then a HEAD: both come back too.
	io.WriteString(c, get("/serve/big")+"HEAD /len/x HTTP/1.1\r\nHost: test\r\n\r\n"+get("/mem/a"))
	if resp, body := readResponse(t, br); resp.Header.Get("X-Fallback") != "1" || body != string(big) {
		t.Fatalf("/serve/big: %d bytes, header %v", len(body), resp.Header)
	}
	if resp, _ := readResponseTo(t, br, "HEAD"); resp.Header.Get("X-Fallback") != "1" {
		t.Fatalf("HEAD answered by the fast path")
	}
	if resp, body := readResponse(t, br); resp.Header.Get("X-Fallback") != "" || body != "AAAA" {
		t.Fatalf("hit after HEAD: fallback %q body %q", resp.Header.Get("X-Fallback"), body)
	}
	if got, want := e.fallback.Load(), int64(rounds+2); got != want {
		t.Errorf("fallback served %d requests, want %d", got, want)
	}
}

// Responses net/http must end itself keep the connection: chunked or
// unknown length, a request with a body, Connection: close.
func TestNoReclaimWhereNetHTTPEndsTheResponse(t *testing.T) {
	tests := []struct {
		name, req string
		closes    bool
	}{
		{"no content length", get("/echo"), false},
		{"request body", "POST /len/x HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi", false},
		{"short of its content length", get("/serve/missing"), false},
		{"connection close", get("/len/x", "Connection: close\r\n"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.mem["a"] = []byte("AAAA")
			c := e.dial()
			br := bufio.NewReader(c)
			io.WriteString(c, tt.req)
			readResponseTo(t, br, strings.Fields(tt.req)[0])
			io.WriteString(c, get("/mem/a"))
			if tt.closes {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := br.Read(make([]byte, 1)); err == nil {
					t.Fatalf("connection open after Connection: close (%d bytes)", n)
				}
				return
			}
			if resp, _ := readResponse(t, br); resp.Header.Get("X-Fallback") != "1" {
				t.Errorf("next request answered by the fast path, want net/http's")
			}
		})
	}
}

// Reclaimed connections are the fast path's: Shutdown closes them and no
// goroutine is left behind.
func TestReclaimShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := newEnv(t, nil)
		e.mem["a"] = []byte("AAAA")
		for range 20 {
			c := e.dial()
			io.WriteString(c, get("/len/x")+get("/mem/a"))
			br := bufio.NewReader(c)
			readResponse(t, br)
			readResponse(t, br)
		}
		e.shutdown()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // goroutines exit asynchronously; nothing signals it
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Shutdown, %d before", n, before)
	}
}
