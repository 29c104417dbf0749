package catalog

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/upstream"
)

var (
	core = Target{Distro: "archlinux", Repo: "core"}
	base = Target{Distro: "archlinux"}
)

// reload is one reload the watcher made.
type reload struct {
	file string
	err  error
}

// watched is a catalog over cfg with its Watcher running; reloads gets
// every reload it makes.
type watched struct {
	cat     *Catalog
	up      *upstream.Client
	reloads chan reload
}

func startWatched(t *testing.T, cfg *config.Config) *watched {
	t.Helper()
	up, err := upstream.NewClient(upstream.Options{Cooldown: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	cat, err := New(cfg, nil, Options{Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := NewWatcher(cat)
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{cat: cat, up: up, reloads: make(chan reload, 64)}
	wt.reloaded = func(file string, err error) { w.reloads <- reload{file, err} }
	done := make(chan error)
	go func() { done <- wt.Run(t.Context()) }()
	t.Cleanup(func() {
		if err := <-done; err != nil { // t.Context ends just before Cleanup
			t.Errorf("Watcher.Run = %v", err)
		}
	})
	return w
}

// waitFor receives reloads until cond holds, for up to a generous time:
// each change of the file is followed by a reload, so cond is checked
// after each one rather than on a timer.
func (w *watched) waitFor(t *testing.T, what string, cond func(reload) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case r := <-w.reloads:
			if cond(r) {
				return
			}
		case <-timeout:
			t.Fatalf("no reload within 30s: %s", what)
		}
	}
}

func templates(ms *upstream.MirrorSet) []string {
	if ms == nil {
		return nil
	}
	return ms.Templates()
}

// waitTemplates waits until the set of t is want.
func (w *watched) waitTemplates(t *testing.T, target Target, want ...string) {
	t.Helper()
	w.waitFor(t, "mirrors become "+strings.Join(want, ", "), func(reload) bool {
		return slices.Equal(templates(w.cat.Mirrors(target)), want)
	})
}

func writeMirrorlist(t *testing.T, path string, servers ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("## written by the test\n\n")
	for _, s := range servers {
		b.WriteString("Server = " + s + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil { // in place: truncate, write
		t.Fatal(err)
	}
}

func fileConfig(listed []string, file string) *config.Config {
	return &config.Config{Distros: map[string]config.Distro{
		"archlinux": {Layout: "$repo/os/$arch", Arch: []string{"x86_64"}, Upstreams: listed, UpstreamsFile: file,
			Repos: map[string]config.Repo{"core": {Mode: config.ModeProxy}, "custom": {Mode: config.ModeHosted}}},
	}}
}

const (
	mA = "https://a.example/$repo/os/$arch"
	mB = "https://b.example/$repo/os/$arch"
	mC = "https://c.example/$repo/os/$arch"
	mD = "https://d.example/$repo/os/$arch"
)

// The config's upstreams come first, then the file's servers they lack;
// a repo with its own file ignores the distro's.
func TestMirrorsMerge(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "mirrorlist")
	writeMirrorlist(t, list, mB, mA+"/", mC, mB)
	own := filepath.Join(dir, "extra-mirrorlist")
	writeMirrorlist(t, own, mD)
	cfg := fileConfig([]string{mA}, list)
	cfg.Distros["archlinux"].Repos["extra"] = config.Repo{Mode: config.ModeMirror, UpstreamsFile: own}
	w := startWatched(t, cfg)
	for _, tt := range []struct {
		target Target
		want   []string
	}{
		{core, []string{mA, mB, mC}},
		{base, []string{mA, mB, mC}},
		{Target{Distro: "archlinux", Repo: "extra"}, []string{mD}},
		{Target{Distro: "archlinux", Repo: "custom"}, nil},
	} {
		if got := templates(w.cat.Mirrors(tt.target)); !slices.Equal(got, tt.want) {
			t.Errorf("Mirrors(%+v) = %q, want %q", tt.target, got, tt.want)
		}
	}
}

// A file rewritten in place is read again; a mirror that stays keeps its
// health record, and readers never see anything but a whole set.
func TestReloadInPlace(t *testing.T) {
	bad := faultserver.NewTest(t, t.TempDir())
	bad.SetFault(faultserver.AnyPath, faultserver.Fault{Status: http.StatusInternalServerError})
	failing := bad.URL() + "/$repo/os/$arch"
	list := filepath.Join(t.TempDir(), "mirrorlist")
	writeMirrorlist(t, list, failing)
	w := startWatched(t, fileConfig([]string{mA}, list))

	if _, err := w.cat.Mirrors(base).Subset([]string{failing}).Fetch(t.Context(), upstream.Request{File: "lastupdate"}); err == nil {
		t.Fatal("fetch from a mirror answering 500 succeeded")
	}
	health := func() upstream.MirrorHealth {
		for _, h := range w.cat.Mirrors(core).Health() {
			if h.URL == failing {
				return h
			}
		}
		t.Fatalf("%s is not among %q", failing, templates(w.cat.Mirrors(core)))
		return upstream.MirrorHealth{}
	}
	before := health()
	if before.Errors != 1 || before.Healthy {
		t.Fatalf("health before the reload = %+v, want one error, cooling down", before)
	}

	// Readers take the set while it is replaced (run with -race).
	stop := make(chan struct{})
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if ts := templates(w.cat.Mirrors(core)); len(ts) < 2 || ts[0] != mA {
				t.Errorf("a reader saw %q, want mA and the file's servers", ts)
				return
			}
		}
	}()
	writeMirrorlist(t, list, mB, failing)
	w.waitTemplates(t, core, mA, mB, failing)
	writeMirrorlist(t, list, failing, mC, mB)
	w.waitTemplates(t, core, mA, failing, mC, mB)
	close(stop)
	<-readers
	if got := templates(w.cat.Mirrors(base)); !slices.Equal(got, []string{mA, failing, mC, mB}) {
		t.Errorf("base files' mirrors = %q, want the distro's reloaded too", got)
	}
	if after := health(); after.Errors != before.Errors || after.ConsecutiveFailures != 1 || after.Healthy || after.LastError != before.LastError {
		t.Errorf("health after the reloads = %+v, want the record from before (%+v)", after, before)
	}
}

// A file replaced by a rename, as editors and config tools write, is read
// again; so is one written through a symlink's target.
func TestReloadOnRename(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "mirrorlist")
	writeMirrorlist(t, list, mB)
	w := startWatched(t, fileConfig(nil, list))
	for i, next := range [][]string{{mC}, {mD, mB}} {
		tmp := filepath.Join(dir, ".mirrorlist.new")
		writeMirrorlist(t, tmp, next...)
		if err := os.Rename(tmp, list); err != nil {
			t.Fatal(err)
		}
		w.waitTemplates(t, core, next...)
		if i == 0 {
			if got := templates(w.cat.Mirrors(base)); !slices.Equal(got, next) {
				t.Errorf("base mirrors after the rename = %q, want %q", got, next)
			}
		}
	}
}

func TestReloadThroughSymlink(t *testing.T) {
	real := filepath.Join(t.TempDir(), "mirrorlist")
	writeMirrorlist(t, real, mB)
	link := filepath.Join(t.TempDir(), "mirrorlist")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	w := startWatched(t, fileConfig(nil, link))
	writeMirrorlist(t, real, mC)
	w.waitTemplates(t, core, mC)
}

// A file that is emptied, gets a bad line or goes away keeps the last
// good list; the next good version is used.
func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "mirrorlist")
	writeMirrorlist(t, list, mB)
	w := startWatched(t, fileConfig([]string{mA}, list))
	good := w.cat.Mirrors(core)

	steps := []struct {
		name   string
		change func()
		want   string // in the reload's error
	}{
		{"emptied", func() { writeMirrorlist(t, list) }, "no Server line"},
		{"bad line", func() { os.WriteFile(list, []byte("Server = "+mC+"\nServer = gopher://x.example/\n"), 0o644) }, list + ":2: "},
		{"removed", func() { os.Remove(list) }, "no such file"},
		{"a folder in its place", func() { os.Mkdir(list, 0o755) }, "not a regular file"},
	}
	for _, s := range steps {
		s.change()
		w.waitFor(t, s.name+": a failed reload", func(r reload) bool {
			return r.file == list && r.err != nil && strings.Contains(r.err.Error(), s.want)
		})
		if got := w.cat.Mirrors(core); got != good {
			t.Fatalf("%s: mirrors = %q, want the last good set %q kept", s.name, templates(got), templates(good))
		}
	}
	os.Remove(list)
	writeMirrorlist(t, list, mD)
	w.waitTemplates(t, core, mA, mD)
}

// Rewriting a file with the same servers keeps the set.
func TestReloadUnchanged(t *testing.T) {
	list := filepath.Join(t.TempDir(), "mirrorlist")
	writeMirrorlist(t, list, mB)
	w := startWatched(t, fileConfig([]string{mA}, list))
	before := w.cat.Mirrors(core)
	writeMirrorlist(t, list, mA, mB+"/") // both already there
	w.waitFor(t, "a reload", func(r reload) bool { return r.err == nil })
	if w.cat.Mirrors(core) != before {
		t.Error("an unchanged list made a new set")
	}
}

// A catalog without any upstreams_file watches nothing.
func TestWatcherWithoutFiles(t *testing.T) {
	up, err := upstream.NewClient(upstream.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	cat, err := New(fileConfig([]string{mA}, ""), nil, Options{Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := NewWatcher(cat)
	if err != nil || wt.w != nil {
		t.Fatalf("NewWatcher = %+v, %v; want one with no fsnotify watcher", wt, err)
	}
	if err := wt.Run(t.Context()); err != nil {
		t.Errorf("Run = %v, want nil at once", err)
	}
}

// New refuses a repo left without mirrors and an unreadable file, naming
// the repo.
func TestNewRefuses(t *testing.T) {
	up, err := upstream.NewClient(upstream.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	empty := filepath.Join(t.TempDir(), "mirrorlist")
	writeMirrorlist(t, empty)
	for _, file := range []string{empty, empty + ".missing"} {
		if _, err := New(fileConfig(nil, file), nil, Options{Upstream: up}); err == nil || !strings.Contains(err.Error(), "mirrors of archlinux/core") {
			t.Errorf("New with upstreams_file %s alone = %v; want mirrors of archlinux/core refused", file, err)
		}
	}
}
