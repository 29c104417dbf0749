package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestWebUI is the acceptance, tried as a new user would: mirrord
// on the README defaults (Arch proxied, hosted repo "custom"), publish two
// packages, then in the UI find one, see the repos' state, follow its
// dependency, and browse the folder it lives in.
func TestWebUI(t *testing.T) {
	d := startDaemon(t, "", "")
	dir := t.TempDir()
	for _, p := range []testPackage{
		{Name: "hello-lib", Version: "1.0-1", Size: 100},
		{Name: "hello", Version: "1.0-1", Size: 100, Depends: []string{"hello-lib>=1.0", "glibc"}},
	} {
		id, err := d.uploadTo("archlinux/custom", filepath.Join(dir, buildPackage(t, dir, p)))
		if err != nil {
			t.Fatal(err)
		}
		if status, msg := d.waitJob(id); status != "done" {
			t.Fatalf("publish %s: %s %s", p.Name, status, msg)
		}
	}
	eventually(t, 30*time.Second, "the custom db lists hello", func() bool {
		code, _, _ := d.get("/api/v1/repos/archlinux/custom/x86_64/packages/hello")
		return code == 200
	})

	pages := []struct {
		path string
		want []string
	}{
		{"/", []string{`<a href="/ui/repo/archlinux/custom">custom</a>`, `<span class="state good">published</span>`,
			`<a href="/ui/repo/archlinux/core">core</a>`, `<span class="badge mode-proxy">proxy</span>`, `<span class="state muted">not fetched</span>`,
			`<a href="/ui/pkg/archlinux/custom/x86_64/hello">hello</a> 1.0-1`, "Hit ratio", "In flight"}},
		{"/ui/search?q=hello", []string{"2 packages", `<a href="/ui/pkg/archlinux/custom/x86_64/hello">hello</a>`, `<a href="/ui/pkg/archlinux/custom/x86_64/hello-lib">hello-lib</a>`}},
		{"/ui/pkg/archlinux/custom/x86_64/hello", []string{`<a href="/ui/pkg/archlinux/custom/x86_64/hello-lib">hello-lib&gt;=1.0</a>`, "glibc <span class=\"muted\">not in any repo</span>", "mirrord tests &lt;test@example.org&gt;"}},
		{"/ui/repo/archlinux/custom", []string{"Recent publish jobs", "Server = http://127.0.0.1:", "2 packages in x86_64"}},
		{"/archlinux/custom/os/x86_64/", []string{"Index of /archlinux/custom/os/x86_64/", `<a href="./hello-1.0-1-x86_64.pkg.tar.zst">`, `<a href="./custom.db">custom.db</a>`}},
		{"/archlinux/", []string{`<a href="core/">core/</a>`, `<a href="custom/">custom/</a>`}},
	}
	for _, p := range pages {
		code, body, h := d.get(p.path)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s = %d %s, want 200 text/html", p.path, code, h.Get("Content-Type"))
			continue
		}
		for _, w := range p.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s lacks %q", p.path, w)
			}
		}
	}
	if code, _, h := d.get("/archlinux/custom"); code != 301 && code != 200 {
		t.Errorf("GET /archlinux/custom = %d (Location %q), want a redirect to the folder", code, h.Get("Location"))
	}

	browse(t, d.URL)
}

// uploadTo POSTs a package to a hosted repo ("distro/repo") with the
// admin token the daemon made in its data dir (the defaults have no
// api.tokens), and returns the job id.
func (d *daemon) uploadTo(repo, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	req, _ := http.NewRequest("POST", d.URL+"/api/v1/repos/"+repo+"/packages?filename="+filepath.Base(path), f)
	req.Header.Set("Authorization", "Bearer "+d.adminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Job, Error string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("upload %s = %d %s", filepath.Base(path), resp.StatusCode, out.Error)
	}
	return out.Job, nil
}

// browse drives headless Chromium with JavaScript off through search,
// package and dependency, saving a screenshot of each page.
func browse(t *testing.T, base string) {
	t.Helper()
	path := ""
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
		t.Log("chromium not installed: browser part skipped")
		return
	}
	shots := os.Getenv("MIRRORD_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	}
	os.MkdirAll(shots, 0o755)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The browser starts on the first Run, bound to that context: so not
	// one with a timeout. Its first start on a fresh machine (profile,
	// font caches) can take most of a minute; the steps get their own bound.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("chromium did not start within 3 minutes")
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(shots, "e2e-"+name+".png")
		os.WriteFile(file, png, 0o644)
		t.Logf("screenshot %s: %s", name, file)
	}
	title := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Title())
		return s
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable scripts: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("table.repos"))); err != nil {
		t.Fatalf("open the UI: %v", err)
	}
	shot("home")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("q"), "hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.ID("q"))); err != nil {
		t.Fatalf("search: %v", err)
	}
	shot("search")
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`table.pkgs a[href="/ui/pkg/archlinux/custom/x86_64/hello"]`))); err != nil {
		t.Fatalf("open hello: %v", err)
	}
	if got := title(); !strings.HasPrefix(got, "hello 1.0-1") {
		t.Errorf("package page title = %q, want hello 1.0-1 …", got)
	}
	shot("package")
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`ul.deps a[href="/ui/pkg/archlinux/custom/x86_64/hello-lib"]`))); err != nil {
		t.Fatalf("follow the dependency: %v", err)
	}
	if got := title(); !strings.HasPrefix(got, "hello-lib 1.0-1") {
		t.Errorf("dependency page title = %q, want hello-lib 1.0-1 …", got)
	}
	shot("dependency")
}
