package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"
)

var binary string // built once in TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mirrord-e2e-")
	if err != nil {
		panic(err)
	}
	// MIRRORD_E2E_BINARY runs the tests against a given build, such as
	// scripts/reliability.sh's release build for memory figures.
	if binary = os.Getenv("MIRRORD_E2E_BINARY"); binary == "" {
		binary = filepath.Join(dir, "mirrord")
		build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/mirrord")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build mirrord:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool skips when a tool is missing, except in CI where CI installs
// every tool and a missing one is a failure.
func requireTool(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: %v", name, err)
			}
			t.Skipf("%s not installed", name)
		}
	}
}

// daemon is one running mirrord process.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	URL     string
	DataDir string
	logMu   stdsync.Mutex
	log     bytes.Buffer
	exited  chan struct{}
	exitErr error
}

// listenRE finds the address in the "serving" line, text or JSON.
var listenRE = regexp.MustCompile(`msg=serving listen=(\S+)|"msg":"serving","listen":"([^"]+)"`)

// startDaemon runs `mirrord serve` on a free loopback port with the given
// config (YAML; may be empty for the defaults) and waits until it listens.
// The data dir is kept across restarts when dataDir is given.
func startDaemon(t *testing.T, dataDir, configYAML string, extraArgs ...string) *daemon {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir}
	if configYAML != "" {
		path := filepath.Join(t.TempDir(), "mirrord.yaml")
		if err := os.WriteFile(path, []byte(configYAML), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	d := &daemon{t: t, DataDir: dataDir, exited: make(chan struct{})}
	d.cmd = exec.Command(binary, append(args, extraArgs...)...)
	d.cmd.Env = append(os.Environ(), "MIRRORD_LOG_LEVEL=debug")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.logMu.Lock()
			d.log.WriteString(line + "\n")
			d.logMu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				addr <- m[1] + m[2]
			}
		}
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("mirrord log:\n%s", d.Log())
		}
	})
	select {
	case a := <-addr:
		d.URL = "http://" + a
	case <-d.exited:
		t.Fatalf("mirrord exited before listening: %v\n%s", d.exitErr, d.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("mirrord did not listen within 60s\n%s", d.Log())
	}
	return d
}

func (d *daemon) Log() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// Stop sends SIGTERM and returns the exit error.
func (d *daemon) Stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.exitErr
	case <-time.After(60 * time.Second):
		d.t.Fatal("mirrord did not stop within 60s of SIGTERM")
		return nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// get fetches path and returns status and body.
func (d *daemon) get(path string, header ...string) (int, []byte, http.Header) {
	d.t.Helper()
	req, err := http.NewRequest("GET", d.URL+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, body, resp.Header
}

func TestServeDefaults(t *testing.T) {
	d := startDaemon(t, "", "")
	if code, body, _ := d.get("/healthz"); code != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, _, _ := d.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	_, metrics, _ := d.get("/metrics")
	for _, name := range []string{"mirrord_build_info", "mirrord_cache_size_bytes", `mirrord_requests_total{repo="archlinux/core",result="hit"}`} {
		if !bytes.Contains(metrics, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// A file placed in the tree by hand is served, with Range and 304.
	rel := "tree/archlinux/core/os/x86_64/demo-1.0-1-any.pkg.tar.zst"
	os.MkdirAll(filepath.Dir(filepath.Join(d.DataDir, rel)), 0o755)
	os.WriteFile(filepath.Join(d.DataDir, rel), []byte("abcdefghij"), 0o644)
	path := "/archlinux/core/os/x86_64/demo-1.0-1-any.pkg.tar.zst"
	if code, body, _ := d.get(path); code != 200 || string(body) != "abcdefghij" {
		t.Errorf("GET placed file = %d %q", code, body)
	}
	if code, body, _ := d.get(path, "Range", "bytes=2-4"); code != 206 || string(body) != "cde" {
		t.Errorf("GET Range 2-4 = %d %q, want 206 cde", code, body)
	}
	_, _, hdr := d.get(path)
	if code, _, _ := d.get(path, "If-Modified-Since", hdr.Get("Last-Modified")); code != 304 {
		t.Errorf("GET If-Modified-Since = %d, want 304", code)
	}

	if err := d.Stop(); err != nil {
		t.Errorf("mirrord exit after SIGTERM: %v, want 0\n%s", err, d.Log())
	}
	if !strings.Contains(d.Log(), "shutting down") {
		t.Error("no graceful shutdown in the log")
	}
}

func TestConfigCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "m.yaml")
	hash := strings.Repeat("c", 64)
	os.WriteFile(cfg, []byte("data_dir: "+t.TempDir()+"\napi: {tokens: [{name: ci, sha256: "+hash+", repos: [archlinux/custom]}]}\n"), 0o644)
	out, err := exec.Command(binary, "config", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("mirrord config: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte(hash)) || !bytes.Contains(out, []byte("<redacted>")) || !bytes.Contains(out, []byte("archlinux")) {
		t.Errorf("mirrord config output:\n%s\nwant the token hash redacted and the default distro shown", out)
	}

	os.WriteFile(cfg, []byte("cache: {max_size: huge}\n"), 0o644)
	out, err = exec.Command(binary, "config", "--config", cfg).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("cache.max_size")) || !bytes.Contains(out, []byte(cfg)) {
		t.Errorf("bad config: err=%v output=%s; want an error naming cache.max_size and the file", err, out)
	}
}
