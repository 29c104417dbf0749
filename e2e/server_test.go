package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFastPathSwitch: with server.fast_path false every request goes
// through net/http (cmd/mirrord TestNewServer checks the wiring), else
// the fast path answers hits. Both answer a hit, a 304, a bare-LF
// request and Connection: close alike, down to the order of the header
// fields, net/http's: sorted by name, then Date and Connection.
func TestFastPathSwitch(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			up := newUpstream(t)
			dir := filepath.Join(up.Root(), "core/os/x86_64")
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "a-1-1-x86_64.pkg.tar.zst"), []byte("package"), 0o644)
			d := startDaemon(t, "", fmt.Sprintf(`
server: {fast_path: %v}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
`, fast, up.Addr()))
			const path = "/archlinux/core/os/x86_64/a-1-1-x86_64.pkg.tar.zst"
			code, _, hd := d.get(path) // a miss: now it is cached
			if code != 200 {
				t.Fatalf("GET %s = %d", path, code)
			}
			conn, err := net.Dial("tcp", strings.TrimPrefix(d.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			for _, tc := range []struct {
				req    string
				status string
				body   string
			}{
				{"GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", "package"},
				{"GET " + path + " HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + hd.Get("Last-Modified") + "\r\n\r\n", "HTTP/1.1 304 Not Modified", ""},
				{"GET " + path + " HTTP/1.1\nHost: x\n\n", "HTTP/1.1 200 OK", "package"},
				{"GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK", "package"},
			} {
				io.WriteString(conn, tc.req)
				tp := textproto.NewReader(br)
				status, err := tp.ReadLine()
				if err != nil {
					t.Fatalf("%q: %v", tc.req, err)
				}
				var names []string
				length := 0
				for {
					line, err := tp.ReadLine()
					if err != nil {
						t.Fatal(err)
					}
					if line == "" {
						break
					}
					name, value, _ := strings.Cut(line, ": ")
					names = append(names, name)
					if name == "Content-Length" {
						fmt.Sscan(value, &length)
					}
				}
				body := make([]byte, length)
				io.ReadFull(br, body)
				if status != tc.status || string(body) != tc.body {
					t.Errorf("%q = %q %q, want %q %q", tc.req, status, body, tc.status, tc.body)
				}
				if strings.Contains(tc.req, "close") {
					names = slices.DeleteFunc(names, func(n string) bool { return n == "Connection" })
				}
				if len(names) == 0 || names[len(names)-1] != "Date" || !slices.IsSorted(names[:len(names)-1]) {
					t.Errorf("%q: header fields %v, want them sorted, then Date (net/http's order)", tc.req, names)
				}
			}
		})
	}
}
