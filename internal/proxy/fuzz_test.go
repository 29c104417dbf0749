package proxy

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// FuzzPath drives the path resolver as the server does: the request
// target is parsed by net/url, refused by CheckPath or resolved by the
// Router. Whatever it gets, it never panics, never yields a Rel that could
// leave the tree, and every accepted path maps back to itself.
func FuzzPath(f *testing.F) {
	for _, p := range hostilePaths {
		f.Add(p)
	}
	for _, p := range []string{
		"/archlinux/core/os/x86_64/core.db",
		"/archlinux/core/os/x86_64/hello-1:2.0-1-x86_64.pkg.tar.zst.sig",
		"/archlinux/custom/os/x86_64/custom.files.tar.gz",
		"/archlinux/lastupdate",
		"/alarm/aarch64/core/core.db",
		"/archlinux/core/os/x86_64/",
		"/archlinux/core/os/x86_64/a%20b",
		"/archlinux/core/os/x86_64/a+b@c~d",
	} {
		f.Add(p)
	}
	r := testCatalog(f, testConfig(f.TempDir()), nil, nil)
	f.Fuzz(func(t *testing.T, target string) {
		// The fast path's one-pass check refuses whatever CheckPath
		// refuses; it may refuse more (anything with '%' or non-ASCII,
		// which the fast path leaves to net/http anyway).
		if plainPathOK(target) && catalog.CheckPath(target, target) != nil {
			t.Fatalf("plainPathOK(%q) = true, CheckPath refuses it", target)
		}
		if plain := !strings.ContainsFunc(target, func(c rune) bool { return c == '%' || c >= 0x7f }); plain &&
			plainPathOK(target) != (catalog.CheckPath(target, target) == nil) {
			t.Fatalf("plainPathOK(%q) = %v, CheckPath = %v", target, plainPathOK(target), catalog.CheckPath(target, target))
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler
		}
		if err := catalog.CheckPath(u.Path, u.EscapedPath()); err != nil {
			return
		}
		tg, err := r.Resolve(u.Path)
		if err != nil {
			return
		}
		rel := tg.Rel
		if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains(rel, "\\") || strings.ContainsRune(rel, 0) {
			t.Fatalf("Resolve(%q).Rel = %q: empty, absolute or with a backslash or NUL", u.Path, rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("Resolve(%q).Rel = %q: has a %q segment", u.Path, rel, seg)
			}
		}
		if err := store.CleanPath(rel); err != nil {
			t.Fatalf("Resolve(%q).Rel = %q, which the store refuses: %v", u.Path, rel, err)
		}
		if path.Clean("/"+rel) != "/"+rel || "/"+rel != u.Path {
			t.Fatalf("Resolve(%q).Rel = %q does not map back to the path", u.Path, rel)
		}
		// The parts name the same file again.
		again, err := r.Resolve("/" + rel)
		if err != nil || again != tg {
			t.Fatalf("Resolve(/%s) = %+v, %v; want %+v", rel, again, err, tg)
		}
		if tg.File == "" || strings.Contains(tg.File, "/") || !strings.HasSuffix(rel, "/"+tg.File) && rel != tg.Distro+"/"+tg.File {
			t.Fatalf("Resolve(%q).File = %q is not the last segment of %q", u.Path, tg.File, rel)
		}
		if tg.Mutable() != catalog.IsMutable(tg.Repo, tg.File) {
			t.Fatalf("Mutable(%+v) disagrees with IsMutable", tg)
		}
	})
}

// FuzzServePath sends any request target through Guard and the handler
// (no upstream): never a panic, never a 2xx outside the one real file.
func FuzzServePath(f *testing.F) {
	for _, p := range hostilePaths {
		f.Add(p, "")
	}
	f.Add("/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst", "bytes=0-0,2-3,-1")
	f.Add("/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst", "bytes=99999999999999999999-")
	dir := f.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	h, err := New(testCatalog(f, testConfig(dir), st, nil), st, Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := st.WriteFile("archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst", []byte("0123456789"), store.Meta{}); err != nil {
		f.Fatal(err)
	}
	g := Guard(h)
	f.Fuzz(func(t *testing.T, target, rng string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, RequestURI: target, Host: "x"}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		w := &recorder{h: http.Header{}}
		g.ServeHTTP(w, req)
		if w.code/100 == 2 && u.Path != "/archlinux/core/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst" {
			t.Fatalf("GET %q = %d, want a refusal", target, w.code)
		}
	})
}

// recorder is a minimal ResponseWriter that keeps the status only.
type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(p), nil
}
