package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Chromium with JavaScript off: the pages
// must work without it. It skips when Chromium is missing, except in CI.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is required in CI (Debian packages chromium and chromium-driver)")
		}
		t.Skip("chromium not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 45*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifactDir is where screenshots go: $MIRRORD_ARTIFACTS when set (CI
// keeps it), else the test's temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("MIRRORD_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// shot saves a screenshot of the whole page and logs where.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	capture := chromedp.FullScreenshot(100)
	if strings.HasPrefix(name, "index") {
		capture = chromedp.CaptureScreenshot() // the viewport: the full folder is very long
	}
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s", name, path)
}

// text returns the visible text of the first element sel finds.
func text[S chromedp.Selectable](t *testing.T, ctx context.Context, sel S) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %v: %v", sel, err)
	}
	return s
}

// do runs steps and fails the test on an error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// follow clicks a link and waits for the page it leads to.
func follow(t *testing.T, ctx context.Context, sel chromedp.CSS) {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("follow %s: %v", sel, err)
	}
	if resp.Status != 200 {
		t.Fatalf("follow %s: %s answered %d", sel, resp.URL, resp.Status)
	}
}

// TestBrowser walks the UI as a new user would, in a real browser with
// JavaScript off: the overview, a search, a package, one of its
// dependencies, a repo, a folder.
func TestBrowser(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	dir := artifactDir(t)

	do(t, ctx, "open /", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("table.repos")))
	home := text(t, ctx, chromedp.CSS("table.repos"))
	for _, want := range []string{"core", "extra", "custom", "mirror", "proxy", "hosted", "ok", "published"} {
		if !strings.Contains(home, want) {
			t.Errorf("overview lacks %q:\n%s", want, home)
		}
	}
	shot(t, ctx, dir, "home")

	// Search from the header, as a user types it.
	do(t, ctx, "type a search", chromedp.SendKeys(chromedp.ID("q"), "hello"))
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.ID("q"))); err != nil {
		t.Fatalf("submit search: %v", err)
	}
	do(t, ctx, "wait for results", chromedp.WaitVisible(chromedp.CSS("body.page-search table.pkgs")))
	if first := text(t, ctx, chromedp.CSS("table.pkgs tbody tr:first-child th")); strings.TrimSpace(first) != "hello" {
		t.Errorf("first result of hello = %q, want hello", first)
	}
	shot(t, ctx, dir, "search")

	follow(t, ctx, "table.pkgs tbody tr:first-child th a")
	if title, _ := chromedp.Run(ctx, chromedp.Title()); !strings.HasPrefix(title, "hello 1.0-1") {
		t.Errorf("package page title = %q, want hello 1.0-1 …", title)
	}
	shot(t, ctx, dir, "package")

	// Follow the dependency glibc>=2.38 to the package that provides it.
	follow(t, ctx, `ul.deps a[href="/ui/pkg/archlinux/core/x86_64/glibc"]`)
	if title, _ := chromedp.Run(ctx, chromedp.Title()); !strings.HasPrefix(title, "glibc 2.41-1") {
		t.Errorf("dependency page title = %q, want glibc 2.41-1 …", title)
	}
	if sig := text(t, ctx, chromedp.Search(`//dt[.="Signature"]/following-sibling::dd[1]`)); !strings.Contains(sig, "not verified by mirrord") {
		t.Errorf("glibc signature = %q, want present but not verified (a mirror repo's)", sig)
	}
	shot(t, ctx, dir, "dependency")

	do(t, ctx, "open the hosted repo", chromedp.Navigate(e.srv.URL+"/ui/repo/archlinux/custom"), chromedp.WaitVisible(chromedp.CSS("table.jobs")))
	if jobs := text(t, ctx, chromedp.CSS("table.jobs")); !strings.Contains(jobs, "hello") || !strings.Contains(jobs, "done") {
		t.Errorf("publish jobs lack hello done:\n%s", jobs)
	}
	shot(t, ctx, dir, "repo")

	do(t, ctx, "open a folder", chromedp.Navigate(e.srv.URL+"/archlinux/extra/os/x86_64/"), chromedp.WaitVisible(chromedp.CSS("table.index")))
	if folder := text(t, ctx, chromedp.CSS("table.index")); !strings.Contains(folder, "python-3.13.1-1-x86_64.pkg.tar.zst") || !strings.Contains(folder, "not cached") {
		t.Errorf("extra folder lacks the cached python or the not-cached rest:\n%.500s", folder)
	}
	shot(t, ctx, dir, "index")

	do(t, ctx, "open the mirror repo", chromedp.Navigate(e.srv.URL+"/ui/repo/archlinux/core"), chromedp.WaitVisible(chromedp.CSS("dl.fields")))
	if state := text(t, ctx, chromedp.CSS("dl.fields")); !strings.Contains(state, "ok") || !strings.Contains(state, "synced") {
		t.Errorf("mirror repo state lacks ok and synced:\n%s", state)
	}
	shot(t, ctx, dir, "mirror")
}
