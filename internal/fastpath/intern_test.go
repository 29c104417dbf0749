//go:build linux

package fastpath

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// TestPathInterning: a loop's paths come back as the same string while
// interned, never more than maxPaths of them and none longer than
// maxPathLen, whatever a client sends.
func TestPathInterning(t *testing.T) {
	p := &poller{paths: map[string]string{}}
	a := p.path([]byte("/archlinux/core/os/x86_64/core.db"))
	b := p.path([]byte("/archlinux/core/os/x86_64/core.db"))
	if a != "/archlinux/core/os/x86_64/core.db" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("path = %q at %p, then at %p: want one string", a, unsafe.StringData(a), unsafe.StringData(b))
	}
	long := "/" + strings.Repeat("x", maxPathLen)
	if got := p.path([]byte(long)); got != long {
		t.Fatalf("long path = %q", got)
	}
	if _, ok := p.paths[long]; ok {
		t.Fatalf("a path of %d bytes was interned", len(long))
	}
	for i := range 3 * maxPaths {
		want := fmt.Sprintf("/distinct/%d", i)
		if got := p.path([]byte(want)); got != want {
			t.Fatalf("path = %q, want %q", got, want)
		}
		if len(p.paths) > maxPaths {
			t.Fatalf("%d paths interned, at most %d", len(p.paths), maxPaths)
		}
	}
}
