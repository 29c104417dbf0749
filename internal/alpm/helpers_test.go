package alpm

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of an external tool. Without it the test skips,
// except in CI (CI set), where a missing tool is a failure: CI installs
// pacman, repo-add, vercmp and bsdtar, so a skip there would hide a gap.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found and CI is set: %v", name, err)
	}
	t.Skipf("%s not found: %v", name, err)
	return ""
}

func mustDecompress(t testing.TB, data []byte) (io.Reader, func()) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(data))
	dr, release, err := decompress(sniff(br), br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dr, release
}
