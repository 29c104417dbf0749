package web

import (
	"context"
	"fmt"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/pgp"
)

// TestPages checks each page of the UI for what a user must see on it.
func TestPages(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, path string
		code       int
		want, not  []string
	}{
		{"overview", "/", 200, []string{
			`<a href="/ui/repo/archlinux/core">core</a>`, "mode-mirror", "mode-proxy", "mode-hosted",
			`<span class="state good">ok</span>`, "synced", `<span class="state good">published</span>`, `<td class="num">122</td>`,
			"Hit ratio", " of 3 requests</p>", "In flight", "Publish queue",
			`<a href="/ui/pkg/archlinux/custom/x86_64/hello">hello</a> 1.0-1`, `href="/archlinux/extra/os/x86_64/"`,
		}, nil},
		{"search first page", "/ui/search?q=number", 200, []string{"1–50 of 120", `rel="next" href="/ui/search?page=2&amp;q=number"`, "lib000", "lib049"}, []string{"lib050", `rel="prev"`}},
		{"search last page", "/ui/search?q=number&page=3", 200, []string{"101–120 of 120", "lib119", `rel="prev"`}, []string{`rel="next"`, "lib099"}},
		{"search bad page", "/ui/search?q=number&page=x", 200, []string{"1–50 of 120"}, nil},
		{"search ranks prefixes first", "/ui/search?q=lib&page=3", 200, []string{"101–121 of 121", "lib119</a>", `href="/ui/pkg/archlinux/core/x86_64/glibc"`}, nil},
		{"search exact first", "/ui/search?q=glibc", 200, []string{"1 package", `href="/ui/pkg/archlinux/core/x86_64/glibc"`}, nil},
		{"search by description", "/ui/search?q=GREETER", 200, []string{"hello"}, nil},
		{"search nothing", "/ui/search?q=no-such-thing", 200, []string{"No package matches."}, []string{"<table"}},
		{"package", "/ui/pkg/archlinux/custom/x86_64/hello", 200, []string{
			`<a href="/ui/pkg/archlinux/core/x86_64/glibc">glibc&gt;=2.38</a>`,
			`<a href="/ui/pkg/archlinux/core/x86_64/bash">sh</a> <span class="muted">provided by bash</span>`,
			`libfoo.so=1-64 <span class="muted">not in any repo</span>`,
			`<a href="/ui/pkg/archlinux/extra/x86_64/python">python: for the scripts</a>`,
			"Hosted Packager &lt;ci@example.org&gt;", "2026-01-01 00:00 UTC", "MIT", "359 bytes",
			`href="/archlinux/custom/os/x86_64/hello-1.0-1-x86_64.pkg.tar.zst"`, `<span class="state muted">none</span>`,
			"Carried by", `<a href="/ui/repo/archlinux/custom">archlinux/custom</a>`,
		}, nil},
		{"package signed", "/ui/pkg/archlinux/core/x86_64/glibc", 200, []string{`not verified by mirrord</span>: in the database`, "48.0 MiB", "GPL-2.0-or-later, LGPL-2.1-or-later", `href="https://www.gnu.org/software/libc"`}, nil},
		{"package hostile fields", "/ui/pkg/archlinux/extra/x86_64/evil", 200, []string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"}, []string{"<script", "<img src=x", `href="javascript:`}},
		{"no such package", "/ui/pkg/archlinux/core/x86_64/nope", 404, []string{"404 Not Found", "no package &#34;nope&#34; in archlinux/core/x86_64"}, nil},
		{"no such repo's package", "/ui/pkg/archlinux/nope/x86_64/glibc", 404, []string{"no repo"}, nil},
		{"repo hosted", "/ui/repo/archlinux/custom", 200, []string{"Recent publish jobs", `<span class="state job-done">done</span>`, "Server = http://127.0.0.1:", "/archlinux/$repo/os/$arch", "1 package in x86_64"}, nil},
		{"repo filtered", "/ui/repo/archlinux/extra?q=lib01", 200, []string{"10 packages in x86_64", "lib010", "lib019"}, []string{"lib020", "Recent publish jobs"}},
		{"repo paged", "/ui/repo/archlinux/extra?page=3", 200, []string{"101–122 of 122", `rel="prev" href="/ui/repo/archlinux/extra?page=2"`}, nil},
		{"repo mirror", "/ui/repo/archlinux/core", 200, []string{"Last attempt", "fetched 3 files"}, nil},
		{"no such repo", "/ui/repo/archlinux/nope", 404, []string{"There is no repo archlinux/nope."}, nil},
		{"no such page", "/ui/nope", 404, []string{"There is no page at /ui/nope."}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := e.get(tc.path)
			if code != tc.code || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Fatalf("GET %s = %d %s, want %d text/html", tc.path, code, h.Get("Content-Type"), tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s lacks %q", tc.path, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("GET %s has %q", tc.path, n)
				}
			}
			if t.Failed() {
				t.Logf("body:\n%s", body)
			}
		})
	}
}

// TestSelfContained checks that no page loads anything from elsewhere or
// runs a script, and that the headers say so.
func TestSelfContained(t *testing.T) {
	e := newEnv(t)
	external := regexp.MustCompile(`<(link|script|img|iframe|style)[^>]*(src|href)="(https?:)?//`)
	for _, p := range []string{"/", "/ui/search?q=", "/ui/pkg/archlinux/core/x86_64/glibc", "/ui/repo/archlinux/core", "/archlinux/core/os/x86_64/", "/ui/nope"} {
		code, body, h := e.get(p)
		if m := external.FindString(body); m != "" {
			t.Errorf("GET %s loads %s", p, m)
		}
		if strings.Contains(body, "<script") || strings.Contains(body, " style=") {
			t.Errorf("GET %s has a script or an inline style", p)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s (%d): Content-Security-Policy = %q", p, code, csp)
		}
	}
	home := e.page("/")
	css := regexp.MustCompile(`href="(/static/style\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(home)
	if css == nil {
		t.Fatal("the overview links no stylesheet")
	}
	assets := []struct {
		path, ctype, cache string
		code               int
	}{
		{css[1], "text/css", "immutable", 200},
		{"/static/favicon.svg", "image/svg+xml", "max-age=3600", 200},
		{"/static/nope.js", "", "", 404},
	}
	for _, a := range assets {
		code, _, h := e.get(a.path)
		if code != a.code || !strings.HasPrefix(h.Get("Content-Type"), a.ctype) || !strings.Contains(h.Get("Cache-Control"), a.cache) {
			t.Errorf("GET %s = %d %q %q, want %d %q %q", a.path, code, h.Get("Content-Type"), h.Get("Cache-Control"), a.code, a.ctype, a.cache)
		}
	}
}

// TestIndex checks the folder listings of the tree.
func TestIndex(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path string
		code               int
		location           string
		want, not          []string
	}{
		{"distro base", "GET", "/archlinux/", 200, "", []string{`<a href="core/">core/</a>`, `<a href="custom/">custom/</a>`, `<a href="extra/">extra/</a>`, `<a href="lastupdate">lastupdate</a>`, `<a href="/">../</a>`}, nil},
		{"layout step", "GET", "/archlinux/core/", 200, "", []string{`<a href="os/">os/</a>`, `<a href="/archlinux/">archlinux</a>`}, []string{"x86_64/"}},
		{"arch step", "GET", "/archlinux/core/os/", 200, "", []string{`<a href="x86_64/">x86_64/</a>`}, nil},
		{"mirror repo", "GET", "/archlinux/core/os/x86_64/", 200, "", []string{"glibc-2.41-1-x86_64.pkg.tar.zst", "bash-5.2.037-1-x86_64.pkg.tar.zst", `<a href="./core.db">core.db</a>`, `title="3000 bytes"`, "mode-mirror"}, []string{"not cached"}},
		{"proxy repo", "GET", "/archlinux/extra/os/x86_64/", 200, "", []string{
			`<a href="./python-3.13.1-1-x86_64.pkg.tar.zst">python-3.13.1-1-x86_64.pkg.tar.zst</a></td>`, `<a href="./lib000-1.0-1-x86_64.pkg.tar.zst">lib000-1.0-1-x86_64.pkg.tar.zst</a> <span class="note">not cached</span>`,
			`<a href="./extra.files">extra.files</a> <span class="note">not cached</span>`, "2 files in the tree, 122 more named by the database",
		}, nil},
		{"hosted repo", "GET", "/archlinux/custom/os/x86_64/", 200, "", []string{`<a href="./custom.db">custom.db</a>`, "hello-1.0-1-x86_64.pkg.tar.zst", `<a href="/ui/repo/archlinux/custom">Package list</a>`}, []string{"not cached", `custom.db</a>
      <td class="num">–`}},
		{"head", "HEAD", "/archlinux/", 200, "", nil, []string{"core/"}},
		{"folder without slash", "GET", "/archlinux/core", 301, "/archlinux/core/", nil, nil},
		{"repo folder without slash", "GET", "/archlinux/core/os/x86_64?sort=size", 301, "/archlinux/core/os/x86_64/?sort=size", nil, nil},
		{"unknown repo", "GET", "/archlinux/nope/", 404, "", []string{"not found\n"}, nil},
		{"unknown distro", "GET", "/nope/", 404, "", []string{"not found\n"}, nil},
		{"too deep", "GET", "/archlinux/core/os/x86_64/deeper/", 404, "", []string{"not found\n"}, nil},
		{"wrong literal", "GET", "/archlinux/core/of/", 404, "", []string{"not found\n"}, nil},
		{"not a method", "POST", "/archlinux/", 405, "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := e.do(tc.method, tc.path)
			if code != tc.code || h.Get("Location") != tc.location {
				t.Fatalf("%s %s = %d Location %q, want %d %q\n%s", tc.method, tc.path, code, h.Get("Location"), tc.code, tc.location, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s %s lacks %q", tc.method, tc.path, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("%s %s has %q", tc.method, tc.path, n)
				}
			}
			if t.Failed() {
				t.Logf("body:\n%s", body)
			}
		})
	}

	sorts := []struct {
		query        string
		first, after string // first appears before after
	}{
		{"", "extra.db", "lib000-"},
		{"?sort=name&order=desc", "python-", "lib119-"},
		{"?sort=size&order=desc", "extra.db", "lib000-"},
		{"?sort=size", "extra.files", "python-"},
		{"?sort=date", "lib000-", "extra.db"},
		{"?sort=bogus", "extra.db", "lib000-"},
	}
	for _, s := range sorts {
		body := e.page("/archlinux/extra/os/x86_64/" + s.query)
		i, j := strings.Index(body, `">`+s.first), strings.Index(body, `">`+s.after)
		if i < 0 || j < 0 || i > j {
			t.Errorf("folder sorted by %q: %s at %d, %s at %d; want the first before the second", s.query, s.first, i, s.after, j)
		}
	}
}

// TestAgreesWithAPI checks that the UI shows what /api/v1 answers.
func TestAgreesWithAPI(t *testing.T) {
	e := newEnv(t)
	var repos struct{ Distros []api.Distro }
	e.json("/api/v1/repos", &repos)
	home := e.page("/")
	for _, d := range repos.Distros {
		for _, r := range d.Repos {
			n := 0
			for _, a := range r.Arches {
				n += a.Packages
			}
			row := regexp.MustCompile(`(?s)<a href="/ui/repo/` + d.Name + "/" + r.Name + `">.*?<td class="num">(\d+)</td>`).FindStringSubmatch(home)
			if row == nil || row[1] != fmt.Sprint(n) {
				t.Errorf("overview: %s/%s shows %v packages, the API %d", d.Name, r.Name, row, n)
			}
			var list api.Page
			e.json("/api/v1/repos/"+d.Name+"/"+r.Name+"/x86_64/packages?q=lib&per_page=500", &list)
			page := e.page("/ui/repo/" + d.Name + "/" + r.Name + "?q=lib")
			if list.Total > 0 && !strings.Contains(page, fmt.Sprintf("of %d in x86_64", list.Total)) && !strings.Contains(page, plural(list.Total, "package")+" in x86_64") {
				t.Errorf("repo page %s/%s?q=lib does not show the API's total %d", d.Name, r.Name, list.Total)
			}
			for _, p := range list.Packages {
				var full api.Details
				e.json("/api/v1/repos/"+d.Name+"/"+r.Name+"/x86_64/packages/"+p.Name, &full)
				pp := e.page("/ui/pkg/" + d.Name + "/" + r.Name + "/x86_64/" + p.Name)
				for _, w := range []string{full.Version, fmt.Sprintf("(%d bytes)", full.CSize), full.Filename} {
					if !strings.Contains(pp, w) {
						t.Errorf("package page %s lacks the API's %q", p.Name, w)
					}
				}
				break // one per repo is enough; all of extra would be slow
			}
		}
	}
	var st api.Status
	e.json("/api/v1/status", &st)
	if !strings.Contains(home, humanBytes(st.Cache.SizeBytes)) || !strings.Contains(home, fmt.Sprintf("%d files in the tree", st.Cache.Files)) {
		t.Errorf("overview cache differs from the API's %+v", st.Cache)
	}
}

func TestFormat(t *testing.T) {
	sizes := []struct {
		n    int64
		want string
	}{{-1, "–"}, {0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {48 << 20, "48.0 MiB"}, {5 << 40, "5.0 TiB"}}
	for _, s := range sizes {
		if got := humanBytes(s.n); got != s.want {
			t.Errorf("humanBytes(%d) = %q, want %q", s.n, got, s.want)
		}
	}
	now := time.Now()
	times := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"}, {now.Add(time.Second), "just now"}, {now.Add(-90 * time.Second), "1 min ago"},
		{now.Add(-3 * time.Hour), "3 h ago"}, {now.Add(-72 * time.Hour), "3 days ago"}, {now.Add(2 * time.Hour), "in 1 h"},
	}
	for _, c := range times {
		if got := ago(c.t); got != c.want {
			t.Errorf("ago(now%+v) = %q, want %q", c.t.Sub(now).Round(time.Second), got, c.want)
		}
	}
	if got := (&UI{}).readTraffic(); !math.IsNaN(got.HitRatio) || got.Known {
		t.Errorf("traffic without a source = %+v, want unknown", got)
	}
}

// must fails the test unless every want is in the page at path and no
// not is.
func (e *env) must(path string, want, not []string) {
	e.t.Helper()
	body := e.page(path)
	for _, w := range want {
		if !strings.Contains(body, w) {
			e.t.Errorf("GET %s lacks %q", path, w)
		}
	}
	for _, n := range not {
		if strings.Contains(body, n) {
			e.t.Errorf("GET %s has %q", path, n)
		}
	}
}

// TestAnyArch: a package built for any is shown as any, not as the arch
// of the folder whose db lists it; where a distro has several arch
// folders, each row says which.
func TestAnyArch(t *testing.T) {
	e := newEnvWith(t, func(c *config.Config) {
		c.Distros["alarm"] = config.Distro{Layout: "$arch/$repo", Arch: []string{"aarch64", "armv7h"},
			Repos: map[string]config.Repo{"tools": {Mode: config.ModeHosted}}}
	})
	file, pkg := hostedPkg(t, "anytool", "1.0-1", "any", "Runs anywhere")
	e.publish("archlinux/custom", file, pkg)
	e.publish("alarm/tools", file, pkg)

	// One arch folder: any, and nothing more.
	e.must("/ui/search?q=anytool", []string{
		`<a href="/ui/pkg/archlinux/custom/x86_64/anytool">anytool</a>`,
		"<td>any</td>",
		`<td>any <span class="muted">in aarch64</span></td>`, `<td>any <span class="muted">in armv7h</span></td>`,
	}, []string{"<td>x86_64</td>", "<td>aarch64</td>", "in x86_64"})
	e.must("/ui/pkg/alarm/tools/armv7h/anytool", []string{
		"<dt>Architecture</dt><dd>any</dd>",
		`<a href="/ui/pkg/archlinux/custom/x86_64/anytool">any</a>`,
		`<a href="/ui/pkg/alarm/tools/aarch64/anytool">any <span class="muted">in aarch64</span></a>`,
		`<a href="/ui/pkg/alarm/tools/armv7h/anytool">any <span class="muted">in armv7h</span></a>`,
	}, []string{">x86_64</a>", ">armv7h</a>"})
	// A package of the folder's own arch says only its arch.
	e.must("/ui/search?q=hello", []string{"<td>x86_64</td>"}, []string{"muted\">in "})
}

// TestJobLinks: the recent publishes link a package's page only while a
// db lists the very file the job published: not once it is deleted, nor
// once another version replaced it.
func TestJobLinks(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"1.0-1", "2.0-1"} {
		file, pkg := hostedPkg(t, "bye", v, "x86_64", "Soon gone")
		e.publish("archlinux/custom", file, pkg)
	}
	link := func(name, version string) string {
		return `<a href="/ui/pkg/archlinux/custom/x86_64/` + name + `">` + name + `</a> ` + version
	}
	for _, path := range []string{"/", "/ui/repo/archlinux/custom"} {
		e.must(path, []string{link("hello", "1.0-1"), link("bye", "2.0-1"), "<td>bye 1.0-1</td>"}, []string{link("bye", "1.0-1")})
	}

	if code, body, _ := e.do("DELETE", "/api/v1/repos/archlinux/custom/x86_64/packages/bye", "Authorization", "Bearer "+adminToken); code != 200 {
		t.Fatalf("DELETE bye = %d\n%s", code, body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := e.pub.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get("/ui/pkg/archlinux/custom/x86_64/bye"); code != 404 {
		t.Fatalf("bye's page after its deletion = %d, want 404", code)
	}
	for _, path := range []string{"/", "/ui/repo/archlinux/custom"} {
		e.must(path, []string{link("hello", "1.0-1"), "<td>bye 2.0-1</td>", "<td>bye 1.0-1</td>"}, []string{"/ui/pkg/archlinux/custom/x86_64/bye"})
	}
}

// TestSigLevel: a hosted repo's pacman.conf snippet asks for what mirrord
// signs (pacman-conf, when installed, parses each as pacman would); other
// repos keep pacman's default.
func TestSigLevel(t *testing.T) {
	secret, _, err := pgp.NewKey("Repo Key", "repo@example.org")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "repo.asc")
	os.WriteFile(keyFile, secret, 0o600)
	cases := []struct {
		name         string
		signPackages bool   // hosted.sign_packages
		signed       string // the SigLevel of archlinux/signed, with its own key
		pkg, db      string // as pacman-conf expands it
	}{
		{"sign_packages", true, "Required", "PackageRequired", "DatabaseRequired"},
		{"unsigned uploads allowed", false, "DatabaseRequired PackageOptional", "PackageOptional", "DatabaseRequired"},
	}
	// hosted.require_signatures refuses newEnv's unsigned upload: the
	// rule alone, then.
	if got := (&UI{cfg: &config.Config{Hosted: config.Hosted{RequireSignatures: true}}}).sigLevel(true); got != "Required" {
		t.Errorf("sigLevel with hosted.require_signatures = %q, want Required", got)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, func(c *config.Config) {
				c.Hosted.SignPackages = tc.signPackages
				c.Distros["archlinux"].Repos["signed"] = config.Repo{Mode: config.ModeHosted, SigningKey: keyFile}
			})
			snippet := regexp.MustCompile(`(?s)<pre class="conf">(\[.*?)</pre>`)
			conf := map[string]string{}
			for repo, want := range map[string]string{"signed": tc.signed, "custom": "Optional", "core": "", "extra": ""} {
				m := snippet.FindStringSubmatch(e.page("/ui/repo/archlinux/" + repo))
				if m == nil {
					t.Fatalf("%s's page has no pacman.conf snippet", repo)
				}
				conf[repo] = html.UnescapeString(m[1])
				got := regexp.MustCompile(`(?m)^SigLevel = (.*)$`).FindStringSubmatch(conf[repo])
				if (want == "" && got != nil) || (want != "" && (got == nil || got[1] != want)) {
					t.Errorf("%s's snippet:\n%s\nwant SigLevel %q", repo, conf[repo], want)
				}
			}
			if _, err := exec.LookPath("pacman-conf"); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatal("pacman-conf is required in CI (Debian package pacman-package-manager)")
				}
				t.Skip("pacman-conf not installed: the snippets are checked, not parsed")
			}
			path := filepath.Join(t.TempDir(), "pacman.conf")
			os.WriteFile(path, []byte("[options]\nArchitecture = x86_64\n"+conf["signed"]+"\n"+conf["custom"]+"\n"), 0o644)
			for repo, want := range map[string][]string{"signed": {tc.pkg, tc.db}, "custom": {"PackageOptional", "DatabaseOptional"}} {
				out, err := exec.Command("pacman-conf", "--config", path, "--repo", repo, "SigLevel").CombinedOutput()
				if err != nil {
					t.Fatalf("pacman-conf --repo %s: %v\n%s", repo, err, out)
				}
				for _, w := range want {
					if !strings.Contains(string(out), w+"\n") {
						t.Errorf("pacman-conf reads %s's SigLevel as\n%s\nwant %s", repo, out, w)
					}
				}
			}
		})
	}
}
