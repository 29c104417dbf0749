package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

const secret = "TOP-SECRET-OUTSIDE-THE-TREE"

// testConfig has one Arch-style and one ARM-style distro.
func testConfig(dataDir string) *config.Config {
	return &config.Config{
		DataDir: dataDir,
		Distros: map[string]config.Distro{
			"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "custom": {Mode: config.ModeHosted}}},
			"alarm": {Layout: "$arch/$repo", Arch: []string{"aarch64"},
				Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}}},
		},
	}
}

// newTestServer serves a data dir that holds one package, with a secret
// file beside the tree and symlinks that try to reach it.
func newTestServer(t *testing.T) (*httptest.Server, string) {
	return newTestServerMem(t, 0)
}

func newTestServerMem(t *testing.T, memory int64) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{MemorySize: memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	repo := filepath.Join(dir, "tree/archlinux/core/os/x86_64")
	os.MkdirAll(repo, 0o755)
	os.WriteFile(filepath.Join(repo, "hello-1.0-1-x86_64.pkg.tar.zst"), []byte("0123456789"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte(secret), 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte(secret), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(repo, "abs-1-1-any.pkg.tar.zst"))
	os.Symlink("../../../../../secret", filepath.Join(repo, "rel-1-1-any.pkg.tar.zst"))
	os.Symlink("/etc/passwd", filepath.Join(repo, "passwd-1-1-any.pkg.tar.zst"))
	h, err := New(testCatalog(t, testConfig(dir), st, nil), st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return serveFast(t, h), dir
}

func TestServeHit(t *testing.T) {
	for _, memory := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprintf("memory=%d", memory), func(t *testing.T) { testServeHit(t, memory) })
	}
}

func testServeHit(t *testing.T, memory int64) {
	srv, _ := newTestServerMem(t, memory)
	url := srv.URL + "/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst"
	tests := []struct {
		name       string
		method     string
		header     map[string]string
		wantStatus int
		wantBody   string
	}{
		{"get", "GET", nil, 200, "0123456789"},
		{"head", "HEAD", nil, 200, ""},
		{"range", "GET", map[string]string{"Range": "bytes=3-5"}, 206, "345"},
		{"open range", "GET", map[string]string{"Range": "bytes=7-"}, 206, "789"},
		{"range past end", "GET", map[string]string{"Range": "bytes=10-"}, 416, ""},
		{"if-modified-since", "GET", map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, 304, ""},
		{"if-modified-since old", "GET", map[string]string{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"}, 200, "0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s status = %d, want %d", tt.name, resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 416 && string(body) != tt.wantBody {
				t.Errorf("%s body = %q, want %q", tt.name, body, tt.wantBody)
			}
			if tt.wantStatus == 200 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("Content-Type = %q", ct)
				}
				if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Last-Modified") == "" {
					t.Errorf("headers = %v: want Last-Modified and no Content-Encoding", resp.Header)
				}
				if tt.method == "HEAD" && resp.ContentLength != 10 {
					t.Errorf("HEAD Content-Length = %d, want 10", resp.ContentLength)
				}
			}
		})
	}
}

// hostilePaths are request targets sent verbatim on the wire. None may
// answer 200 nor leak the secret.
var hostilePaths = []string{
	"/archlinux/../secret",
	"/archlinux/core/os/x86_64/../../../../secret",
	"/archlinux/core/os/x86_64/../../../../../secret",
	"/../../../../etc/passwd",
	"/archlinux/core/os/x86_64/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret",
	"/archlinux/core/os/x86_64/%2E%2E%2F%2E%2E%2Fsecret",
	"/archlinux/core/os/x86_64/..%2f..%2f..%2f..%2fsecret",
	"/archlinux/core/os/x86_64/..%5c..%5csecret",
	"/archlinux/core/os/x86_64/..\\..\\secret",
	"/archlinux%2fcore%2fos%2fx86_64%2fhello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst%00.sig",
	"/archlinux/core/os/x86_64/%00",
	"/archlinux/core/os/x86_64/abs-1-1-any.pkg.tar.zst",
	"/archlinux/core/os/x86_64/rel-1-1-any.pkg.tar.zst",
	"/archlinux/core/os/x86_64/passwd-1-1-any.pkg.tar.zst",
	"//etc/passwd",
	"/archlinux//core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64//hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/./core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/.",
	"/archlinux/core/os/x86_64/..",
	"/archlinux/core/os/x86_64/.hidden",
	"/archlinux/core/os/i686/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/nope/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/other/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/xx/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/sub/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/%252e%252e/secret",
	"/archlinux/core/os/x86_64/..;/..;/secret",
	"/archlinux/core/os/x86_64/%c0%ae%c0%ae/secret",
	"/archlinux/core/os/x86_64/\u2024\u2024/secret",
	"/archlinux/core/os/x86_64/hello%0a",
	"/archlinux/core/os/x86_64/hello%0d%0aX-Injected:%20yes",
	"/archlinux/core/os/x86_64/" + strings.Repeat("a", 300),
	"/" + strings.Repeat("a/", 600) + "secret",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst/",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst/..",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst/../../../../../secret",
	"/archlinux/core/os/x86_64/~/secret",
	"/archlinux/core/os/x86_64/-rf",
	"/alarm/core/aarch64/../../archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/%2fetc%2fpasswd",
	"/archlinux/core/os/x86_64/....//....//secret",
	"/archlinux/core/os/x86_64/.%2e/.%2e/secret",
	"/archlinux/core/os/x86_64/%2e./%2e./secret",
	// Issue 7: more encodings and smuggling forms.
	"/archlinux/core/os/x86_64/%252f..%252f..%252fsecret",
	"/archlinux/core/os/x86_64/%ef%bc%8f..%ef%bc%8fsecret",
	"/archlinux/core/os/x86_64/%c0%af..%c0%afsecret",
	"/archlinux/core/os/x86_64/%e0%80%ae%e0%80%ae/secret",
	"/archlinux/core/os/x86_64/%",
	"/archlinux/core/os/x86_64/%zz",
	"/archlinux/core/os/x86_64/%u002e%u002e/secret",
	"/archlinux/core/os/x86_64/..%00/secret",
	"/archlinux/core/os/x86_64/%7f",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst%09",
	"/archlinux/core/os/x86_64/...",
	"/archlinux/core/os/x86_64/..../secret",
	"http://127.0.0.1/archlinux/../secret",
	"*",
	"archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/?../../../../secret",
	"/archlinux/core/os/x86_64/#/../../../../secret",
	"/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst;../../../../secret",
	"/ARCHLINUX/CORE/OS/X86_64/hello-1.0-1-x86_64.pkg.tar.zst",
	"/archlinux/core/os/x86_64/" + strings.Repeat("%2e%2e/", 200) + "secret",
}

func TestHostilePaths(t *testing.T) {
	srv, _ := newTestServer(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, p := range hostilePaths {
		status, body := rawGet(t, addr, p)
		if status == 200 || status == 206 || status/100 == 3 {
			t.Errorf("GET %q = %d, want a 4xx refusal", p, status)
		}
		if strings.Contains(body, secret) || strings.Contains(body, "root:") {
			t.Errorf("GET %q leaked a file outside the tree", p)
		}
	}
}

// rawGet sends the path exactly as given, without any client normalisation.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "" // the server refused to parse it at all: fine
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testCatalog is the catalog of cfg over st with up's mirror sets (nil: none).
func testCatalog(tb testing.TB, cfg *config.Config, st *store.Store, up *upstream.Client) *catalog.Catalog {
	tb.Helper()
	cat, err := catalog.New(cfg, st, catalog.Options{Upstream: up})
	if err != nil {
		tb.Fatal(err)
	}
	return cat
}
