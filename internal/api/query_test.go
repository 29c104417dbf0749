package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/mirrord/mirrord/internal/alpm"
)

// pkgWith builds a package that provides names and has a description.
func pkgWith(t *testing.T, name, desc string, provides ...string) []byte {
	t.Helper()
	pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: "1.0-1", Desc: desc, Arch: "x86_64", BuildDate: 1795824270, ISize: 3, Provides: provides}}
	var b bytes.Buffer
	if err := alpm.WritePackage(&b, pi, []alpm.PackageFile{{Name: "usr/share/" + name, Body: []byte("hi\n")}}, alpm.Zstd); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func refNames(refs []Ref) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Repo+"/"+r.Package.Name)
	}
	return out
}

func TestSearchProvidersCarriersJobs(t *testing.T) {
	e := newEnv(t, testConfig())
	var jobs []string
	for _, p := range []struct{ repo, name, desc string }{
		{"local", "xhello", "contains the term"},
		{"local", "hello", "the exact name"},
		{"local", "shell", "says hello in a shell"},
		{"other", "hello-lib", "a prefix"},
		{"other", "hello", "the same name elsewhere"},
		{"other", "zzz", "unrelated"},
	} {
		var provides []string
		if p.name == "shell" {
			provides = []string{"sh=5.2"}
		}
		token := tokenCI
		if p.repo == "other" {
			token = tokenOther
		}
		code, out, _ := e.do("POST", "/api/v1/repos/archlinux/"+p.repo+"/packages?filename=x.pkg.tar.zst", token, bytes.NewReader(pkgWith(t, p.name, p.desc, provides...)), "application/octet-stream")
		if code != http.StatusAccepted {
			t.Fatalf("upload = %d %v, want 202", code, out)
		}
		e.waitJob(out["job"].(string))
		jobs = append(jobs, out["job"].(string))
	}
	e.idle()

	search := []struct {
		name      string
		q         string
		page, per int
		want      []string
		total     int
	}{
		{"ranked", "HELLO", 1, 50, []string{"local/hello", "other/hello", "other/hello-lib", "local/xhello", "local/shell"}, 5},
		{"second page", "hello", 2, 2, []string{"other/hello-lib", "local/xhello"}, 5},
		{"past the end", "hello", 9, 2, nil, 5},
		{"everything", "", 1, 50, []string{"local/hello", "other/hello", "other/hello-lib", "local/shell", "local/xhello", "other/zzz"}, 6},
		{"nothing", "nope", 1, 50, nil, 0},
	}
	for _, tc := range search {
		t.Run(tc.name, func(t *testing.T) {
			res := e.h.Search(tc.q, tc.page, tc.per)
			if got := refNames(res.Results); !slices.Equal(got, tc.want) || res.Total != tc.total {
				t.Errorf("Search(%q, %d, %d) = %v (total %d), want %v (total %d)", tc.q, tc.page, tc.per, got, res.Total, tc.want, tc.total)
			}
		})
	}

	providers := []struct {
		dep  string
		want []string
	}{
		{"hello>=1.0", []string{"local/hello", "other/hello"}},
		{"sh", []string{"local/shell"}},
		{"sh: a shell for the scripts", []string{"local/shell"}},
		{"libnothing.so=1-64", nil},
	}
	for _, tc := range providers {
		if got := refNames(e.h.Providers("archlinux", "x86_64", tc.dep)); !slices.Equal(got, tc.want) {
			t.Errorf("Providers(%q) = %v, want %v", tc.dep, got, tc.want)
		}
	}
	if got := refNames(e.h.Providers("archlinux", "aarch64", "hello")); got != nil {
		t.Errorf("Providers in an arch not served = %v, want none", got)
	}
	if got, want := refNames(e.h.Carriers("hello")), []string{"local/hello", "other/hello"}; !slices.Equal(got, want) {
		t.Errorf("Carriers(hello) = %v, want %v", got, want)
	}

	list, err := e.h.Jobs("archlinux", "local", 2)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range list {
		ids = append(ids, j.ID)
	}
	if want := []string{jobs[2], jobs[1]}; !slices.Equal(ids, want) {
		t.Errorf("Jobs(local, 2) = %v, want the last two of local, newest first %v", ids, want)
	}
	if all, _ := e.h.Jobs("", "", 100); len(all) != len(jobs) || all[0].ID != jobs[len(jobs)-1] {
		t.Errorf("Jobs(all) = %d jobs, newest %v; want %d, newest %s", len(all), all, len(jobs), jobs[len(jobs)-1])
	}
}

// TestGoAndJSONAgree checks that each read endpoint answers exactly what
// its Go function returns: the web UI calls the functions.
func TestGoAndJSONAgree(t *testing.T) {
	e := newEnv(t, testConfig())
	e.publish("local", pkgWith(t, "hello", "greets"), "")
	e.idle()
	same := func(path string, v any) {
		t.Helper()
		want, _ := json.Marshal(v)
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got, exp any
		json.NewDecoder(resp.Body).Decode(&got)
		json.Unmarshal(want, &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("GET %s = %v, want %v", path, got, exp)
		}
	}
	page, err := e.h.Packages("archlinux", "local", "x86_64", "hel", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	same("/api/v1/repos/archlinux/local/x86_64/packages?q=hel&per_page=10", page)
	p, err := e.h.Package("archlinux", "local", "x86_64", "hello")
	if err != nil {
		t.Fatal(err)
	}
	same("/api/v1/repos/archlinux/local/x86_64/packages/hello", p)
	same("/api/v1/repos", map[string]any{"distros": e.h.Repos()})
	same("/api/v1/status", e.h.Status())

	// The status keys scripts read.
	var st map[string]any
	resp, err := http.Get(e.srv.URL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	cache, _ := st["cache"].(map[string]any)
	for _, k := range []string{"in_flight", "publish", "sync"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status lacks %q: %v", k, st)
		}
	}
	if _, ok := cache["size_bytes"]; !ok {
		t.Errorf("status.cache lacks size_bytes: %v", st)
	}
	if _, err := e.h.Package("archlinux", "local", "x86_64", "nope"); HTTPStatus(err) != http.StatusNotFound {
		t.Errorf("HTTPStatus(Package(nope)) = %d, want 404", HTTPStatus(err))
	}
}
