//go:build linux

package fastpath

import (
	"bytes"
	"net"
	"net/http"
	"testing"
)

// smallBody is what smallHits' server answers with.
var smallBody = []byte("a small database")

// smallHits starts a Server whose Hit answers smallBody from memory for
// core.db, connects to it and sends req once: it returns the connection
// and the length of that response, which every next one has too (only
// the Date's value differs). Hit allocates nothing.
func smallHits(t *testing.T, req []byte) (net.Conn, int) {
	t.Helper()
	s := &Server{
		Hit: func(dst []byte, req *Request) ([]byte, Response, bool) {
			if req.Path != "/archlinux/core/os/x86_64/core.db" {
				return dst, Response{}, false
			}
			return append(dst, "Content-Length: 16\r\n"...), Response{Data: smallBody}, true
		},
		Fallback: &http.Server{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		<-served
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+len(smallBody) {
			break
		}
	}
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(buf[:n], smallBody) {
		t.Fatalf("response %q", buf[:n])
	}
	return c, n
}
