package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/store/s3obj"
)

// WeedVersion is the SeaweedFS module version scripts/seaweedfs.sh builds;
// keep the two in step.
const WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// Server is one running `weed mini`.
type Server struct {
	Endpoint  string // "http://127.0.0.1:PORT", the S3 gateway
	Bucket    string
	AccessKey string
	SecretKey string
}

// Binary is the weed binary to run: $MIRRORD_WEED, else the one
// scripts/seaweedfs.sh caches, or "" if there is none.
func Binary() string {
	if p := os.Getenv("MIRRORD_WEED"); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "mirrord", "weed-"+WeedVersion)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Start runs a SeaweedFS server with one bucket for the rest of the test.
// Without the binary it skips the test, but fails it in CI (CI set), where
// .ci/run builds the binary first.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no weed binary: run scripts/seaweedfs.sh or set MIRRORD_WEED")
		}
		t.Skip("no weed binary: run scripts/seaweedfs.sh or set MIRRORD_WEED")
	}
	s := &Server{Bucket: "mirrord-test", AccessKey: "mirrord" + token(4), SecretKey: token(20)}
	// A port picked free can be taken by someone else before weed binds
	// it; then weed exits, and a second set of ports is tried.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(t, bin); err == nil {
			return s
		}
		t.Logf("start weed: %v", err)
	}
	t.Fatalf("start weed: %v", err)
	return nil
}

func (s *Server) start(t testing.TB, bin string) error {
	dir := t.TempDir()
	cfg, err := json.Marshal(map[string]any{
		"identities": []map[string]any{{
			"name":        "mirrord",
			"credentials": []map[string]string{{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
			"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
		}},
	})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	// A loopback address of its own (127.0.0.0/8 is all loopback on
	// Linux): the eight ports are found free here and bound by weed later.
	var b [3]byte
	rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 2+b[2]%250)
	ports, err := freePorts(ip, 8)
	if err != nil {
		return err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://" + ip + ":" + p(0)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	logs := &output{}
	cmd := exec.Command(bin, "mini",
		"-dir="+data,
		"-bucket="+s.Bucket,
		"-s3.config="+cfgPath,
		"-ip="+ip, "-ip.bind="+ip,
		"-s3.port="+p(0), "-s3.port.grpc="+p(1),
		"-master.port="+p(2), "-master.port.grpc="+p(3),
		"-volume.port="+p(4), "-volume.port.grpc="+p(5),
		"-filer.port="+p(6), "-filer.port.grpc="+p(7),
		"-filer.localSocket="+filepath.Join(dir, "filer.sock"),
		"-s3.localSocket="+filepath.Join(dir, "s3.sock"),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-webdav=false", "-admin.ui=false",
		"-master.telemetry=false",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs // one writer: exec copies both with one goroutine
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	if err := s.waitReady(exited); err != nil {
		stop()
		return fmt.Errorf("%w; its output:\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("weed output:\n%s", logs.String())
		}
	})
	return nil
}

// waitReady polls the S3 gateway until the bucket answers to our key:
// the master, volume server, filer and gateway are up and the config
// applied. It gives up when weed exits or after a minute.
func (s *Server) waitReady(exited <-chan error) error {
	b, err := s3obj.New(s3obj.Options{
		Endpoint: s.Endpoint, Bucket: s.Bucket, PathStyle: true,
		AccessKey: s.AccessKey, SecretKey: s.SecretKey,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		// A listing needs the bucket and takes the key: that is ready.
		_, err := b.List(ctx, "")
		if err == nil {
			return nil
		}
		last = err
		select {
		case err := <-exited:
			return fmt.Errorf("weed exited (%v) before it was ready: %v", err, last)
		case <-ctx.Done():
			return fmt.Errorf("weed not ready after a minute: %v", last)
		case <-tick.C:
		}
	}
}

// freePorts are n loopback ports free a moment ago.
// freePorts is n free ports on ip. weed binds them a moment later: on
// an address of its own (see start) no other test's connection takes one
// meanwhile.
func freePorts(ip string, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func token(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
