package alpm

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// xzTool compresses data with the real xz and the given flags.
func xzTool(t *testing.T, data []byte, args ...string) []byte {
	t.Helper()
	path := needTool(t, "xz")
	cmd := exec.Command(path, append([]string{"-c"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", args, err)
	}
	return out
}

func readXz(data []byte) ([]byte, error) {
	x, err := newXzReader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(x)
}

func TestXzReader(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte('a' + r.IntN(4)) // compressible with some entropy
	}
	var goXz bytes.Buffer
	w, err := xz.NewWriter(&goXz)
	must(t, err)
	w.Write(data)
	must(t, w.Close())
	single := xzTool(t, data)
	tests := []struct {
		name string
		in   []byte
	}{
		{"default", single},
		{"ulikunitz writer", goXz.Bytes()},
		{"check none", xzTool(t, data, "--check=none")},
		{"check crc32", xzTool(t, data, "--check=crc32")},
		{"check sha256", xzTool(t, data, "--check=sha256")},
		{"many blocks", xzTool(t, data, "-T2", "--block-size=65536")},
		{"level 9", xzTool(t, data, "-9")},
		{"concatenated with padding", append(append(append([]byte{}, single...), 0, 0, 0, 0), single...)},
		{"empty", xzTool(t, nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readXz(tc.in)
			want := data
			switch tc.name {
			case "concatenated with padding":
				want = append(append([]byte{}, data...), data...)
			case "empty":
				want = []byte{}
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("readXz(%s) = %d bytes, %v; want %d bytes", tc.name, len(got), err, len(want))
			}
		})
	}
}

func TestXzReaderErrors(t *testing.T) {
	data := bytes.Repeat([]byte("hello xz "), 10000)
	single := xzTool(t, data)
	corrupt := append([]byte{}, single...)
	corrupt[len(corrupt)/2] ^= 0xff
	// Dictionary byte 40 (4 GiB) in the first block header: header at
	// offset 12, size byte, flags, filter id 0x21, props size 1, props.
	huge := append([]byte{}, single...)
	huge[12+4] = 40
	tests := []struct {
		name, wantErr string
		in            []byte
	}{
		{"truncated", "unexpected EOF", single[:len(single)-20]},
		{"corrupt", "xz", corrupt},
		{"huge dictionary", "", huge}, // header CRC breaks first; both refuse
		{"bcj filter", "only plain LZMA2", xzTool(t, data, "--x86", "--lzma2")},
		{"not xz", "stream header", []byte("\xfd7zXZ\x00garbage!")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readXz(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("readXz(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

// TestWindowLimit: headers declaring a window above the limit are refused
// before the decoder allocates it.
func TestWindowLimit(t *testing.T) {
	// zstd frame header: magic, descriptor 0, window exponent 18 => 256 MiB.
	zstdFrame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3, 0x01, 0x00, 0x00}
	if _, err := ReadDB(bytes.NewReader(zstdFrame)); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("ReadDB(256 MiB zstd window) error = %v, want a window size error", err)
	}
	// An xz block declaring 1 GiB, with valid header checksums.
	data := xzTool(t, []byte("x"), "--lzma2=dict=1GiB")
	if _, err := readXz(data); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("readXz(1 GiB dictionary) error = %v, want a limit error", err)
	}
	// The same with a dictionary within the limit reads fine.
	if got, err := readXz(xzTool(t, []byte("x"), "--lzma2=dict=64MiB")); err != nil || string(got) != "x" {
		t.Errorf("readXz(64 MiB dictionary) = %q, %v, want x", got, err)
	}
}
