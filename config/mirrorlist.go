package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits of a mirrorlist: Arch's complete list, every line uncommented,
// is about 100 KiB and 1,100 servers.
const (
	mirrorlistMaxBytes   = 4 << 20
	mirrorlistMaxLine    = 4 << 10
	mirrorlistMaxServers = 10_000
)

// ReadMirrorlist reads the Server lines of a pacman mirrorlist file (an
// upstreams_file), as ParseMirrorlist does; errors name the file and line
// ("/etc/pacman.d/mirrorlist:12: ..."). A file without a Server line gives
// an empty list and no error: the caller decides what that means.
func ReadMirrorlist(path string) ([]string, error) {
	// O_NONBLOCK: opening a FIFO would block until a writer came; on a
	// regular file it changes nothing.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return nil, err
	} else if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	// One more byte than allowed tells a file at the limit from a longer one.
	data, err := io.ReadAll(io.LimitReader(f, mirrorlistMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > mirrorlistMaxBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a mirrorlist", path, mirrorlistMaxBytes)
	}
	servers, err := ParseMirrorlist(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return servers, nil
}

// ParseMirrorlist returns the URL templates of a mirrorlist in pacman's
// format, as reflector and rankmirrors write it, in file order:
//
//	## Germany
//	Server = https://mirror.example/archlinux/$repo/os/$arch
//	#Server = https://commented.example/$repo/os/$arch
//
// As in pacman.conf, '#' starts a comment anywhere on a line and blanks
// around '=' do not matter. Blank lines are skipped, and so are
// CacheServer lines: pacman asks those first without counting their
// failures, for a LAN cache, which is no upstream for mirrord (it may be
// mirrord itself). Anything else (a section, another directive, a Server
// that is not an http:// or https:// URL with a host) is an error naming
// its line as "N: message".
func ParseMirrorlist(data []byte) ([]string, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a BOM some editors write
	var servers []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, mirrorlistMaxLine)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case strings.HasPrefix(text, "["):
			return nil, fmt.Errorf("%d: %q: a mirrorlist has no sections, only Server = URL lines", line, excerpt(text))
		case !ok:
			return nil, fmt.Errorf("%d: %q is not a Server = URL line", line, excerpt(text))
		case key == "CacheServer":
			continue
		case key != "Server":
			return nil, fmt.Errorf("%d: %q: want Server = URL (pacman's key is Server, so spelled)", line, excerpt(key))
		}
		if err := checkServer(value); err != nil {
			return nil, fmt.Errorf("%d: Server %q: %w", line, excerpt(value), err)
		}
		if len(servers) == mirrorlistMaxServers {
			return nil, fmt.Errorf("%d: more than %d servers", line, mirrorlistMaxServers)
		}
		servers = append(servers, value)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%d: line longer than %d bytes", line+1, mirrorlistMaxLine)
		}
		return nil, fmt.Errorf("%d: %w", line+1, err)
	}
	return servers, nil
}

// checkServer accepts what internal/upstream can fetch from: an http or
// https URL with a host and no query (a file name is appended to it), in
// printable ASCII (an international host is written in punycode).
func checkServer(s string) error {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return errors.New("contains a blank, control or non-ASCII character")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.Unwrap(err) // url.Error repeats the value
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL with a host")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return errors.New("a query cannot take a file name after it")
	}
	return nil
}

// excerpt is as much of a bad line as an error quotes: enough to find it,
// not a file's contents (upstreams_file may name any file, and errors are
// logged).
func excerpt(s string) string {
	const most = 40
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "..."
}
