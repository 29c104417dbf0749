package catalog

import (
	"errors"
	"slices"
	"strings"

	"github.com/mirrord/mirrord/config"
)

// errBadPath is a request path that no configured repo can contain: it is
// refused before anything touches the filesystem.
var errBadPath = errors.New("bad path")

// Target is a resolved request for one file of one repo.
type Target struct {
	Distro, Repo, Arch, File string
	Mode                     string // config.ModeMirror, ModeProxy or ModeHosted
	Rel                      string // path in the tree, e.g. "archlinux/core/os/x86_64/core.db"
}

// Mutable reports whether the file can change upstream under the same
// name: databases, their signatures and the sync stamps. Everything else
// (packages and their .sig) is immutable by name.
func (t Target) Mutable() bool { return IsMutable(t.Repo, t.File) }

// IsMutable is Target.Mutable for a repo and a file name.
func IsMutable(repo, file string) bool {
	if file == "lastupdate" || file == "lastsync" {
		return true
	}
	base := strings.TrimSuffix(file, ".sig")
	for _, db := range []string{repo + ".db", repo + ".files"} {
		if base == db || strings.HasPrefix(base, db+".tar") {
			return true
		}
	}
	// Anything that is not a package is treated as mutable, so that it is
	// revalidated rather than cached forever.
	return !strings.Contains(base, ".pkg.tar")
}

// Router resolves URL paths against the configured distros, repos and
// arches only: anything else is errBadPath.
type Router struct {
	distros map[string]distroRoute
}

type distroRoute struct {
	layout []string // segments of the layout, e.g. ["$repo", "os", "$arch"]
	arches []string
	repos  map[string]string // repo -> mode
}

// newRouter prepares path resolution for cfg.
func newRouter(cfg *config.Config) *Router {
	r := &Router{distros: map[string]distroRoute{}}
	for name, d := range cfg.Distros {
		dr := distroRoute{layout: strings.Split(d.Layout, "/"), arches: d.Arch, repos: map[string]string{}}
		for rn, repo := range d.Repos {
			dr.repos[rn] = repo.Mode
		}
		r.distros[name] = dr
	}
	return r
}

// baseMode is how the distro's base files are kept: written by the sync
// when any repo is a mirror, else proxied when any repo is, else hosted.
func (d distroRoute) baseMode() string {
	mode := config.ModeHosted
	for _, m := range d.repos {
		if m == config.ModeMirror {
			return m
		}
		if m == config.ModeProxy {
			mode = m
		}
	}
	return mode
}

// CheckPath refuses paths that are never valid, whatever is configured:
// empty, '.' or '..' segments, doubled or encoded slashes, NUL, backslash,
// control characters. rawPath is the path as the client sent it.
func CheckPath(path, rawPath string) error {
	if !strings.HasPrefix(path, "/") || len(path) > 1024 {
		return errBadPath
	}
	lower := strings.ToLower(rawPath)
	for _, enc := range []string{"%2f", "%5c", "%00", "%2e"} {
		if strings.Contains(lower, enc) {
			return errBadPath
		}
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return errBadPath
		}
	}
	// No empty, "." or ".." segment; a trailing '/' (a folder) is fine.
	for rest := path[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) {
			return errBadPath
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// Resolve maps a URL path to a Target. It returns errBadPath for anything
// that is not a file of a configured repo and arch. It does not allocate:
// it runs on every request.
func (r *Router) Resolve(path string) (Target, error) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return Target{}, errBadPath
	}
	distro, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return Target{}, errBadPath
	}
	d, ok := r.distros[distro]
	if !ok {
		return Target{}, errBadPath
	}
	if rest == "lastupdate" || rest == "lastsync" {
		// The mirror's sync stamps live at the distro's base, as on an
		// Arch mirror; they belong to no repo.
		return Target{Distro: distro, File: rest, Mode: d.baseMode(), Rel: path[1:]}, nil
	}
	t := Target{Distro: distro}
	for _, l := range d.layout {
		var seg string
		seg, rest, ok = strings.Cut(rest, "/")
		if !ok || !d.step(l, seg, &t.Repo, &t.Arch) {
			return Target{}, errBadPath
		}
	}
	if t.Repo == "" {
		t.Repo = d.onlyRepo()
	}
	if !validFile(rest) { // also refuses a deeper path: '/' is not a file character
		return Target{}, errBadPath
	}
	t.File = rest
	t.Mode = d.repos[t.Repo]
	t.Rel = path[1:]
	return t, nil
}

// validFile allows the names that appear in a repo folder: packages
// (with ':' for an epoch), signatures, databases; no hidden files.
func validFile(f string) bool {
	if f == "" || len(f) > 255 || f[0] == '.' || f[0] == '-' {
		return false
	}
	for _, c := range []byte(f) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-', c == '+', c == '@', c == ':', c == '~':
		default:
			return false
		}
	}
	return true
}

// Folder is a folder of the tree that the configuration defines: a
// distro's base, a step of its layout, or a repo's arch folder.
type Folder struct {
	Distro string
	Layout []string // the distro's layout segments, e.g. ["$repo", "os", "$arch"]
	Segs   []string // the path's segments after the distro
	Repo   string   // "" until the path names it
	Arch   string
}

// RepoDir reports whether the folder holds a repo's files.
func (f Folder) RepoDir() bool { return len(f.Segs) == len(f.Layout) }

// Rel is the folder's path in the tree, without a trailing '/'.
func (f Folder) Rel() string { return strings.Join(append([]string{f.Distro}, f.Segs...), "/") }

// Folder maps "/archlinux/core/os/" (with or without its trailing '/')
// to the folder, following the distro's layout as Resolve does: "$repo"
// must be a repo, "$arch" an arch, any other segment itself.
func (r *Router) Folder(path string) (Folder, bool) {
	path = strings.Trim(path, "/")
	if path == "" {
		return Folder{}, false
	}
	parts := strings.Split(path, "/")
	d, ok := r.distros[parts[0]]
	if !ok {
		return Folder{}, false
	}
	f := Folder{Distro: parts[0], Layout: d.layout, Segs: parts[1:]}
	if len(f.Segs) > len(f.Layout) {
		return Folder{}, false
	}
	for i, seg := range f.Segs {
		if !d.step(f.Layout[i], seg, &f.Repo, &f.Arch) {
			return Folder{}, false
		}
	}
	if f.Repo == "" && !slices.Contains(f.Layout, "$repo") {
		f.Repo = d.onlyRepo()
	}
	return f, true
}

// step matches the path segment seg against the layout segment l: "$repo"
// must be a configured repo and "$arch" an arch, which it stores in repo
// or arch; any other layout segment must be seg itself.
func (d distroRoute) step(l, seg string, repo, arch *string) bool {
	switch l {
	case "$repo":
		if _, ok := d.repos[seg]; !ok {
			return false
		}
		*repo = seg
	case "$arch":
		if !slices.Contains(d.arches, seg) {
			return false
		}
		*arch = seg
	default:
		return seg == l
	}
	return true
}

// onlyRepo is the repo of a layout without "$repo", which has exactly one.
func (d distroRoute) onlyRepo() string {
	for name := range d.repos {
		return name
	}
	return ""
}
