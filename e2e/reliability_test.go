package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mirrord/mirrord/internal/faultserver"
)

// Hostile input against the real binary: what the server itself
// refuses (long URLs and headers, slow headers), malformed Range headers on
// cached and in-flight files, folder paths, bad uploads and bombs, bad
// tokens. Every answer is a 4xx or a valid 2xx/3xx, never a 5xx or a
// crash, and the daemon serves on afterwards.

// rawRequest sends req verbatim and returns the status (0: no response).
func rawRequest(t *testing.T, addr, req string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		io.WriteString(conn, req) // the server may answer before reading it all
		if strings.Contains(req, "Connection: close") {
			conn.(*net.TCPConn).CloseWrite() // the client is done: a cut body ends here
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func hostileDaemon(t *testing.T) (*daemon, *faultserver.Server, map[string][]byte) {
	t.Helper()
	up := newUpstream(t)
	dir := filepath.Join(up.Root(), "core/os/x86_64")
	os.MkdirAll(dir, 0o755)
	files := map[string][]byte{}
	for i, size := range []int{10_000, 3 << 20, 32 << 20} {
		name := fmt.Sprintf("f%d-1-1-x86_64.pkg.tar.zst", i)
		b := bytes.Repeat([]byte{byte('a' + i)}, size)
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		files[name] = b
	}
	sum := sha256.Sum256([]byte(hostedToken))
	d := startDaemon(t, "", fmt.Sprintf(`
hosted: {workers: 2, debounce: 50ms, max_delay: 1s, max_upload: 1MiB}
api:
  tokens:
    - {name: ci, sha256: %s, repos: [archlinux/myrepo]}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
      myrepo: {mode: hosted}
`, hex.EncodeToString(sum[:]), up.Addr()))
	return d, up, files
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func (d *daemon) goroutines() int {
	_, body, _ := d.get("/metrics")
	m := goroutinesRE.FindSubmatch(body)
	if m == nil {
		d.t.Fatal("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func TestHostileRequests(t *testing.T) {
	d, up, files := hostileDaemon(t)
	addr := strings.TrimPrefix(d.URL, "http://")
	const hit = "/archlinux/core/os/x86_64/f0-1-1-x86_64.pkg.tar.zst"
	if code, _, _ := d.get(hit); code != 200 {
		t.Fatalf("GET %s = %d", hit, code)
	}
	base := d.goroutines()

	t.Run("request line and headers", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  string
			ok   int // a status that is right too
		}{
			{"2 KiB path", "GET /archlinux/" + strings.Repeat("a", 2048) + " HTTP/1.1\r\nHost: x\r\n\r\n", 0},
			{"100 KiB URL", "GET /" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 0},
			{"70 KiB header line", "GET " + hit + " HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\n\r\n", 0},
			{"5000 headers within 64 KiB", "GET " + hit + " HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 5000) + "\r\n", 200},
			{"9000 headers", "GET " + hit + " HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 9000) + "\r\n", 0},
			{"bad method", "FOO " + hit + " HTTP/1.1\r\nHost: x\r\n\r\n", 0},
			{"bad version", "GET " + hit + " HTTP/9.9\r\nHost: x\r\n\r\n", 505},
			{"no host", "GET " + hit + " HTTP/1.1\r\n\r\n", 0},
			{"NUL in header", "GET " + hit + " HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 0},
			{"bad content-length", "GET " + hit + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 0},
			{"two content-lengths", "POST /api/v1/repos/archlinux/myrepo/packages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 0},
			{"smuggling", "POST /api/v1/repos/archlinux/myrepo/packages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		} {
			if code, _ := rawRequest(t, addr, tc.req); code != 0 && code/100 != 4 && code != tc.ok {
				t.Errorf("%s: status %d, want a 4xx or a closed connection", tc.name, code)
			}
		}
	})

	t.Run("bare LF line ends", func(t *testing.T) {
		// net/http and nginx answer them; the fast path once left them to
		// time out.
		for _, req := range []string{
			"GET " + hit + " HTTP/1.1\nHost: x\n\n",
			"GET " + hit + " HTTP/1.1\r\nHost: x\r\n\n",
		} {
			start := time.Now()
			code, body := rawRequest(t, addr, req)
			el := time.Since(start)
			if code != 200 || !bytes.Equal(body, files["f0-1-1-x86_64.pkg.tar.zst"]) || el > time.Second {
				t.Errorf("%q = %d, %d bytes after %v; want 200 and the file within a second", req, code, len(body), el)
			}
			t.Logf("bare-LF request answered after %v", el.Round(time.Millisecond))
		}
	})

	ranges := []string{
		"bytes=abc", "bytes=5-2", "bytes=-0", "bytes=--1", "bytes=0-0,-1", "items=0-1", "bytes=99999999999999999999-",
		"bytes=0-99999999999999999999", "bytes= 0 - 1 ", "bytes=0-1,,2-3", "bytes=,", "bytes=-", "bytes=1-1,1-1,1-1,1-1",
		"bytes=0-" + strings.Repeat("9", 500), "bytes=" + strings.Repeat("0-0,", 4000) + "0-0",
		"bytes=" + strings.Repeat("1-2,", 2000) + "3-4", "bytes=10000-", "bytes=-10001",
	}
	t.Run("malformed ranges on a cached file", func(t *testing.T) {
		for _, rg := range ranges {
			code, _, _ := d.get(hit, "Range", rg)
			if code != 200 && code != 206 && code != 416 {
				t.Errorf("GET with Range %.40q = %d, want 200, 206 or 416", rg, code)
			}
		}
	})
	t.Run("many ranges on a file in flight", func(t *testing.T) {
		const big = "f1-1-1-x86_64.pkg.tar.zst"
		gate := make(chan struct{})
		up.SetFault("/core/os/x86_64/"+big, faultserver.Fault{Gate: gate, GateAfter: 1 << 20, Times: 1})
		rg := "bytes=" + strings.Repeat("0-0,2000000-2000001,", 200) + "3000000-"
		type result struct {
			code int
			body []byte
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("GET", d.URL+"/archlinux/core/os/x86_64/"+big, nil)
			req.Header.Set("Range", rg)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- result{}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			done <- result{resp.StatusCode, b}
		}()
		<-up.Seen("/core/os/x86_64/"+big, 1)
		close(gate)
		r := <-done
		if r.code != 200 && r.code != 206 && r.code != 416 {
			t.Errorf("GET in flight with %d ranges = %d, want 200, 206 or 416", 401, r.code)
		}
		if r.code == 200 && !bytes.Equal(r.body, files[big]) {
			t.Errorf("GET in flight with many ranges = 200 with %d bytes, want the whole file", len(r.body))
		}
		if code, body, _ := d.get("/archlinux/core/os/x86_64/" + big); code != 200 || !bytes.Equal(body, files[big]) {
			t.Errorf("GET %s after = %d, %d bytes", big, code, len(body))
		}
	})
	t.Run("folder paths", func(t *testing.T) {
		for _, p := range []string{"/", "/archlinux", "/archlinux/", "/archlinux/core/", "/archlinux/core/os/", "/archlinux/core/os/x86_64/", "/archlinux/myrepo/os/x86_64/", "/api/v1", "/api/v1/repos/"} {
			for _, m := range []string{"GET", "HEAD"} {
				if code, _ := rawRequest(t, addr, m+" "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); code == 0 || code >= 500 {
					t.Errorf("%s %s = %d, want an answer below 500", m, p, code)
				}
			}
		}
	})

	t.Run("uploads", func(t *testing.T) {
		post := func(ct string, body io.Reader, token string) (int, string) {
			req, _ := http.NewRequest("POST", d.URL+"/api/v1/repos/archlinux/myrepo/packages?filename=x-1-1-any.pkg.tar.zst", body)
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			if token != "" {
				req.Header.Set("Authorization", token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			var out struct{ Job, Error string }
			json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out.Job + out.Error
		}
		bearer := "Bearer " + hostedToken
		for _, tc := range []struct {
			name, ct, token string
			body            []byte
			want            int
		}{
			{"no token", "", "", []byte("x"), 401},
			{"wrong token", "", "Bearer nope", []byte("x"), 401},
			{"token with a space", "", "Bearer " + hostedToken + "x", []byte("x"), 401},
			{"basic auth", "", "Basic " + hostedToken, []byte("x"), 401},
			{"32 KiB token", "", "Bearer " + strings.Repeat("t", 32<<10), []byte("x"), 401},
			{"oversized", "", bearer, bytes.Repeat([]byte{0x28, 0xb5, 0x2f, 0xfd}, 1<<19), 413},
			{"not a package", "", bearer, []byte("hello"), 422},
			{"empty", "", bearer, nil, 422},
			{"malformed multipart", "multipart/form-data; boundary=xx", bearer, []byte("--xx\r\nnot a header\r\n\r\n"), 400},
			{"multipart without boundary", "multipart/form-data", bearer, []byte("--\r\n"), 400},
			{"multipart unknown field", "multipart/form-data; boundary=xx", bearer, []byte("--xx\r\nContent-Disposition: form-data; name=\"evil\"\r\n\r\nx\r\n--xx--\r\n"), 400},
			{"multipart path name", "multipart/form-data; boundary=xx", bearer, []byte("--xx\r\nContent-Disposition: form-data; name=\"package\"; filename=\"../../x.pkg.tar.zst\"\r\n\r\nx\r\n--xx--\r\n"), 400},
		} {
			if code, msg := post(tc.ct, bytes.NewReader(tc.body), tc.token); code != tc.want {
				t.Errorf("upload %s = %d %s, want %d", tc.name, code, msg, tc.want)
			}
		}
		// A truncated body: the announced length never comes.
		code, _ := rawRequest(t, addr, "POST /api/v1/repos/archlinux/myrepo/packages?filename=x.pkg.tar.zst HTTP/1.1\r\nHost: x\r\n"+
			"Authorization: "+bearer+"\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n\x28\xb5\x2f\xfdshort")
		if code != 0 && code/100 != 4 {
			t.Errorf("truncated upload = %d, want a 4xx or a closed connection", code)
		}
		// A zstd bomb: 1 KiB that inflates to 1 GiB. The worker stops at
		// its bound (16 x max_upload) and fails the job, quickly.
		start := time.Now()
		code, job := post("", bytes.NewReader(zstdBomb(t, 1<<30)), bearer)
		if code != 202 {
			t.Fatalf("bomb upload = %d %s, want 202 then a failed job", code, job)
		}
		if status, msg := d.waitJob(job); status != "failed" {
			t.Errorf("bomb job = %s %s, want failed", status, msg)
		}
		if el := time.Since(start); el > 20*time.Second {
			t.Errorf("bomb took %v to refuse", el)
		}
	})

	if code, _, _ := d.get("/healthz"); code != 200 {
		t.Fatalf("/healthz after hostile input = %d", code)
	}
	eventually(t, 20*time.Second, "goroutines back to their count before the hostile input", func() bool {
		return d.goroutines() <= base+5
	})
}

// zstdBomb is a package whose .PKGINFO is followed by a file of n zero
// bytes: a few KiB that decompress to n.
func zstdBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	tw := tar.NewWriter(zw)
	pi := []byte("pkgname = bomb\npkgbase = bomb\npkgver = 1-1\narch = any\nsize = 1\n")
	tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pi))})
	tw.Write(pi)
	tw.WriteHeader(&tar.Header{Name: "usr/big", Mode: 0o644, Size: n})
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zero)) {
		tw.Write(zero[:min(left, int64(len(zero)))])
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestSlowClients: a client that sends its headers a byte at a time is cut
// by the server's header timeout (10 s). The long version also checks
// that a stalled upload body and a client that never reads a response are
// cut within a minute and leave no goroutine behind.
func TestSlowClients(t *testing.T) {
	d, _, _ := hostileDaemon(t)
	addr := strings.TrimPrefix(d.URL, "http://")
	base := d.goroutines()
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// closedBy reports on the channel when the server closes conn, reading
	// (and dropping) whatever it answers before.
	closedBy := func(conn net.Conn) <-chan time.Time {
		ch := make(chan time.Time, 1)
		go func() {
			io.Copy(io.Discard, conn)
			ch <- time.Now()
		}()
		return ch
	}

	t.Run("slow headers", func(t *testing.T) {
		conn := dial()
		closed := closedBy(conn)
		start := time.Now()
		req := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 60) + "\r\n\r\n"
		for i := 0; i < len(req); i++ {
			select {
			case at := <-closed:
				if el := at.Sub(start); el > 15*time.Second {
					t.Errorf("slow headers cut after %v, want about 10s", el)
				}
				return
			case <-time.After(time.Second): // the attack is the pace
				conn.Write([]byte{req[i]})
			}
		}
		t.Errorf("slow headers: the whole request went through at 1 byte/s in %v", time.Since(start))
	})
	t.Run("silent connections", func(t *testing.T) {
		// Connections that never send a byte are closed at the header
		// timeout (10 s) from accept, as net/http closes them; the fast
		// path held them for the idle timeout, 120 s.
		const n = 300
		var wg sync.WaitGroup
		var mu sync.Mutex
		var worst time.Duration
		for range n {
			start := time.Now()
			conn := dial()
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, err := io.Copy(io.Discard, conn)
				el := time.Since(start)
				if err != nil {
					t.Errorf("silent connection: %v after %v, want closed by the server", err, el)
				}
				mu.Lock()
				worst = max(worst, el)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if worst > 11*time.Second {
			t.Errorf("%d silent connections: the last closed %v after its dial, want at most 11s", n, worst)
		}
		t.Logf("%d silent connections closed after %v", n, worst.Round(100*time.Millisecond))
	})
	if fullReliability() {
		t.Run("stalled upload body", func(t *testing.T) {
			conn := dial()
			closed := closedBy(conn)
			start := time.Now()
			io.WriteString(conn, "POST /api/v1/repos/archlinux/myrepo/packages?filename=x.pkg.tar.zst HTTP/1.1\r\nHost: x\r\n"+
				"Authorization: Bearer "+hostedToken+"\r\nContent-Length: 100000\r\n\r\n\x28\xb5\x2f\xfd")
			select {
			case at := <-closed:
				t.Logf("stalled upload body cut after %v", at.Sub(start).Round(time.Second))
			case <-time.After(90 * time.Second):
				t.Error("stalled upload body: connection still open after 90s")
			}
		})
		t.Run("clients that never read", func(t *testing.T) {
			// Each pins a handler while its write blocks: 40 of them show.
			// The file is larger than the socket buffers can take (up to
			// some 4 MB each way): a response the kernel takes whole is
			// answered, and its connection is merely idle (IdleTimeout).
			const n = 40
			for range n {
				io.WriteString(dial(), "GET /archlinux/core/os/x86_64/f2-1-1-x86_64.pkg.tar.zst HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			eventually(t, 30*time.Second, "handlers of the clients that never read running", func() bool {
				return d.goroutines() >= base+n
			})
			start := time.Now()
			eventually(t, 90*time.Second, "the handlers of clients that never read released", func() bool {
				return d.goroutines() <= base+5
			})
			t.Logf("clients that never read released after %v", time.Since(start).Round(time.Second))
		})
	}
	eventually(t, 30*time.Second, "goroutines back to their count before the slow clients", func() bool {
		return d.goroutines() <= base+5
	})
}

// TestLoadMix runs the load tool (cmd/mirrord-load mix) against the
// binary: hits, cold misses of one file and of many, revalidations and
// uploads at once, with no error, nothing lost, and mirrord's goroutines
// back to their idle count. The full 1,000-connection, 60 s run is
// scripts/reliability.sh, on a binary built without the race detector.
func TestLoadMix(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	tool := filepath.Join(t.TempDir(), "mirrord-load")
	if out, err := exec.Command("go", "build", "-o", tool, "../cmd/mirrord-load").CombinedOutput(); err != nil {
		t.Fatalf("build mirrord-load: %v\n%s", err, out)
	}
	out, err := exec.Command(tool, "mix", "--binary", binary, "--clients", "100", "--duration", "5s", "--cold", "1000", "--uploads", "100").CombinedOutput()
	t.Logf("mirrord-load mix:\n%s", out)
	if err != nil {
		t.Fatalf("mirrord-load mix: %v", err)
	}
}

// TestUploadBombs: eight hostile uploads at once, each small
// and declaring a 128 MiB window (zstd --long=27, xz --lzma2=dict=128MiB)
// over hundreds of MB of zeros, or listing 1,000,000 files, next to four
// ordinary packages. Every bomb fails with its reason, every ordinary
// package is published, and with a release build (MIRRORD_E2E_BINARY,
// as scripts/reliability.sh runs it) mirrord's peak RSS stays under
// 400 MB. The short version inflates to 16 MiB instead of 300 MiB.
func TestUploadBombs(t *testing.T) {
	requireTool(t, "xz", "zstd")
	zeros := int64(16 << 20)
	if fullReliability() {
		zeros = 300 << 20
	}
	d := startDaemon(t, "", hostedConfig("50ms", "1s"))
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	victim := write("victim-2-1-x86_64.pkg.tar.zst", ordinaryPackage(t, "victim", "2-1"))
	if id, err := d.upload(victim); err != nil {
		t.Fatal(err)
	} else if status, msg := d.waitJob(id); status != "done" {
		t.Fatalf("victim 2-1 = %s %s", status, msg)
	}

	// Tar pieces; the zeros are compressed once and shared: concatenated
	// zstd frames and xz streams decompress to the concatenation.
	pkginfo := func(name, version, arch string) []byte {
		return []byte("pkgname = " + name + "\npkgbase = " + name + "\npkgver = " + version + "\narch = " + arch + "\nsize = 1\n")
	}
	type part struct {
		name string
		body []byte // nil: size zeros, from the shared stream
		size int64
	}
	tarOf := func(parts ...part) (head, tail [][]byte) {
		// head[i] is what comes before the i-th run of zeros.
		var b bytes.Buffer
		for _, p := range parts {
			size := int64(len(p.body))
			if p.body == nil {
				size = p.size
			}
			b.Write(tarHeader(t, p.name, size))
			if p.body == nil {
				head = append(head, slices.Clone(b.Bytes()))
				b.Reset()
				continue
			}
			b.Write(p.body)
			if pad := len(p.body) % 512; pad != 0 {
				b.Write(make([]byte, 512-pad))
			}
		}
		b.Write(make([]byte, 1024)) // end of archive
		return head, [][]byte{b.Bytes()}
	}
	zstdArgs, xzArgs := []string{"-q", "-c", "--long=27"}, []string{"-c", "--lzma2=dict=128MiB"}
	zstdZeros := compressZeros(t, "zstd", zstdArgs, zeros)
	xzZeros := compressZeros(t, "xz", xzArgs, zeros)
	build := func(tool string, args []string, shared []byte, parts ...part) []byte {
		head, tail := tarOf(parts...)
		var out []byte
		for _, h := range head {
			out = append(out, compressWith(t, tool, args, h)...)
			out = append(out, shared...)
		}
		return append(out, compressWith(t, tool, args, tail[0])...)
	}
	both := func(name string, parts ...part) map[string][]byte {
		return map[string][]byte{
			name + ".pkg.tar.zst": build("zstd", zstdArgs, zstdZeros, parts...),
			name + ".pkg.tar.xz":  build("xz", xzArgs, xzZeros, parts...),
		}
	}
	bombs := map[string][]byte{"zeros.pkg.tar.zst": zstdZeros, "zeros.pkg.tar.xz": xzZeros}
	want := map[string]string{"zeros.pkg.tar.zst": "no .PKGINFO", "zeros.pkg.tar.xz": "no .PKGINFO"}
	for name, data := range both("older", part{name: ".PKGINFO", body: pkginfo("victim", "1-1", "x86_64")}, part{name: "usr/zeros", size: zeros}) {
		bombs[name], want[name] = data, "not newer"
	}
	for name, data := range both("late-pkginfo", part{name: "usr/zeros", size: zeros}, part{name: ".PKGINFO", body: pkginfo("victim", "1.5-1", "x86_64")}) {
		bombs[name], want[name] = data, "not newer"
	}
	bombs["armv7h.pkg.tar.zst"] = build("zstd", zstdArgs, zstdZeros, part{name: ".PKGINFO", body: pkginfo("armbomb", "1-1", "armv7h")}, part{name: "usr/zeros", size: zeros})
	want["armv7h.pkg.tar.zst"] = `arch "armv7h" is not one of`
	// 1,000,000 empty files: 512 MB of tar headers in about 3 MB.
	var many bytes.Buffer
	zw, _ := zstd.NewWriter(&many, zstd.WithWindowSize(1<<27), zstd.WithEncoderConcurrency(1))
	tw := tar.NewWriter(zw)
	pi := pkginfo("manyfiles", "1-1", "any")
	tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pi))})
	tw.Write(pi)
	for i := range 1_000_000 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/share/many/%07d", i), Mode: 0o644})
	}
	tw.Close()
	zw.Close()
	bombs["manyfiles.pkg.tar.zst"], want["manyfiles.pkg.tar.zst"] = many.Bytes(), "more than 200000 files (hosted.max_files_per_package is 200000)"

	type result struct{ name, status, msg string }
	results := make(chan result)
	uploadAll := func(files map[string][]byte) {
		for name, data := range files {
			path := write(name, data)
			go func() {
				id, err := d.upload(path)
				if err != nil {
					results <- result{name, "refused", err.Error()}
					return
				}
				status, msg := d.waitJob(id)
				results <- result{name, status, msg}
			}()
		}
	}
	ordinary := map[string][]byte{}
	for i := range 4 {
		name := fmt.Sprintf("ordinary%d", i)
		ordinary[name+"-1.0-1-x86_64.pkg.tar.zst"] = ordinaryPackage(t, name, "1.0-1")
	}
	before := procStatus(t, d, "VmRSS:")
	start := time.Now()
	uploadAll(bombs)
	uploadAll(ordinary)
	sizes := []string{}
	for name, data := range bombs {
		sizes = append(sizes, fmt.Sprintf("%s %d KB", name, len(data)/1000))
	}
	slices.Sort(sizes)
	failed, published := 0, 0
	for range len(bombs) + len(ordinary) {
		r := <-results
		if w, bomb := want[r.name]; bomb {
			if r.status != "failed" || !strings.Contains(r.msg, w) {
				t.Errorf("bomb %s = %s %q, want failed with %q", r.name, r.status, r.msg, w)
			} else {
				failed++
			}
		} else if r.status != "done" {
			t.Errorf("ordinary upload %s = %s %q, want done", r.name, r.status, r.msg)
		} else {
			published++
		}
	}
	elapsed := time.Since(start)
	peak := procStatus(t, d, "VmHWM:")
	t.Logf("upload bombs: %d of %d bombs failed with their reasons, %d of %d ordinary uploads published, in %.1f s; mirrord RSS %d MiB before, peak %d MiB (%s; zeros %d MiB)",
		failed, len(bombs), published, len(ordinary), elapsed.Seconds(), before>>20, peak>>20, strings.Join(sizes, ", "), zeros>>20)
	if os.Getenv("MIRRORD_E2E_BINARY") != "" && peak > 400<<20 {
		t.Errorf("peak RSS %d MiB, want under 400 MB", peak>>20)
	}
}

// ordinaryPackage is a package as makepkg makes one (zstd --ultra -20:
// a 32 MiB window) with 1 MiB of incompressible content.
func ordinaryPackage(t *testing.T, name, version string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b, zstd.WithWindowSize(32<<20), zstd.WithEncoderConcurrency(1))
	tw := tar.NewWriter(zw)
	pi := []byte("pkgname = " + name + "\npkgbase = " + name + "\npkgver = " + version + "\narch = x86_64\nsize = 1048576\n")
	tw.WriteHeader(&tar.Header{Name: ".PKGINFO", Mode: 0o644, Size: int64(len(pi))})
	tw.Write(pi)
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i*2654435761>>13 ^ i)
	}
	tw.WriteHeader(&tar.Header{Name: "usr/share/" + name + "/data", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	zw.Close()
	return b.Bytes()
}

// tarHeader is the ustar header block of a regular file.
func tarHeader(t *testing.T, name string, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	return b.Bytes()[:512]
}

// compressWith runs a compressor on data.
func compressWith(t *testing.T, tool string, args []string, data []byte) []byte {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return out
}

// compressZeros compresses n zero bytes streamed into the tool.
func compressZeros(t *testing.T, tool string, args []string, n int64) []byte {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Stdin = io.LimitReader(zeroReader{}, n)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return out
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// procStatus is a size field of mirrord's /proc/PID/status, in bytes.
func procStatus(t *testing.T, d *daemon, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, d.cmd.Process.Pid)
	return 0
}
