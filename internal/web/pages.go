package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/alpm"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/sync"
)

const perPage = 50

// homeData is the overview: every repo, the cache, the publish queue.
type homeData struct {
	Distros []distroRow
	Status  api.Status
	Traffic trafficCard
	Jobs    []jobRow
	Hosted  bool // some repo is hosted: show the jobs section
}

type distroRow struct {
	Name, Layout, Folder string
	Repos                []repoRow
}

type repoRow struct {
	Distro, Name, Mode, Href string
	Arches                   []archCell
	Packages                 int
	Fresh                    freshness
}

type archCell struct {
	Arch, Folder, Error string
	DB                  bool
	Packages            int
}

type jobRow struct {
	hosted.Job
	Href string // the published package's page, while a db lists that very file
}

func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	st := u.api.Status()
	syncs := syncStates(st.Sync)
	d := homeData{Status: st, Traffic: u.readTraffic()}
	for _, dv := range u.api.Repos() {
		dr := distroRow{Name: dv.Name, Layout: dv.Layout, Folder: "/" + url.PathEscape(dv.Name) + "/"}
		for _, rv := range dv.Repos {
			dr.Repos = append(dr.Repos, u.repoRow(dv.Name, rv, syncs))
			d.Hosted = d.Hosted || rv.Mode == config.ModeHosted
		}
		d.Distros = append(d.Distros, dr)
	}
	if d.Hosted {
		d.Jobs = u.jobs(r, "", "", 8)
	}
	u.render(w, r, http.StatusOK, "home", page{Title: "Repositories", Nav: "repos", Data: d})
}

func (u *UI) repoRow(distro string, rv api.Repo, syncs map[string]sync.State) repoRow {
	row := repoRow{Distro: distro, Name: rv.Name, Mode: rv.Mode, Href: repoURL(distro, rv.Name), Fresh: u.freshness(distro, rv.Name, syncs)}
	for _, a := range rv.Arches {
		row.Arches = append(row.Arches, archCell{Arch: a.Arch, Folder: u.folderURL(distro, rv.Name, a.Arch), Error: a.Error, DB: a.DB, Packages: a.Packages})
		row.Packages += a.Packages
	}
	return row
}

// jobs lists recent publish jobs with links to what they published. A
// job's package is linked only while a db of its repo lists the file it
// published: once deleted or replaced by another version, the name's page
// is gone or shows something else.
func (u *UI) jobs(r *http.Request, distro, repo string, limit int) []jobRow {
	list, err := u.api.Jobs(distro, repo, limit)
	if err != nil {
		u.log.Warn("list publish jobs", "path", r.URL.Path, "err", err)
	}
	out := make([]jobRow, 0, len(list))
	for _, j := range list {
		row := jobRow{Job: j}
		if p := j.Package; p != nil && j.Status == hosted.Done {
			for _, a := range p.Arches {
				if d, err := u.api.Package(j.Distro, j.Repo, a, p.Name); err == nil && d.Filename == p.Filename {
					row.Href = pkgURL(j.Distro, j.Repo, a, p.Name)
					break
				}
			}
		}
		out = append(out, row)
	}
	return out
}

// pager is the navigation of a paged list; the links keep the query.
type pager struct {
	Page, Pages, Total, First, Last int // First and Last: the 1-based positions shown
	Prev, Next                      string
}

func newPager(u *url.URL, page, per, total int) pager {
	p := pager{Page: page, Pages: max(1, (total+per-1)/per), Total: total}
	if total > 0 {
		p.First = min((page-1)*per+1, total+1)
		p.Last = min(page*per, total)
	}
	link := func(n int) string {
		q := u.Query()
		q.Set("page", strconv.Itoa(n))
		return u.Path + "?" + q.Encode()
	}
	if page > 1 {
		p.Prev = link(min(page-1, p.Pages))
	}
	if page < p.Pages {
		p.Next = link(page + 1)
	}
	return p
}

// pageParam reads ?page=, 1 when absent or not a positive number.
func pageParam(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 || n > 1<<30 {
		return 1
	}
	return n
}

type searchData struct {
	Query   string
	Results []resultRow
	Pager   pager
}

type resultRow struct {
	api.Ref
	Href, RepoHref string
	// Folder is the arch folder whose db lists the package, shown beside
	// the package's own arch (an "any" package's rows, one per folder of
	// a distro with several arches, would look alike otherwise); "" when
	// the two agree or the distro has one arch.
	Folder string
}

// resultRow is how every list shows a package of a db.
func (u *UI) resultRow(ref api.Ref) resultRow {
	row := resultRow{Ref: ref, Href: pkgURL(ref.Distro, ref.Repo, ref.Arch, ref.Package.Name), RepoHref: repoURL(ref.Distro, ref.Repo)}
	if ref.Package.Arch != ref.Arch && len(u.cfg.Distros[ref.Distro].Arch) > 1 {
		row.Folder = ref.Arch
	}
	return row
}

func (u *UI) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	res := u.api.Search(q, pageParam(r), perPage)
	d := searchData{Query: q, Pager: newPager(r.URL, res.Page, perPage, res.Total)}
	for _, ref := range res.Results {
		d.Results = append(d.Results, u.resultRow(ref))
	}
	title := "All packages"
	if q != "" {
		title = "Search: " + q
	}
	u.render(w, r, http.StatusOK, "search", page{Title: title, Nav: "search", Query: q, Data: d})
}

type repoData struct {
	Row     repoRow
	Arch    string // the arch whose packages are listed
	Filter  string
	Page    api.Page
	Pager   pager
	ListErr string // why there is no listing (no db yet)
	Rows    []resultRow
	Jobs    []jobRow
	Hosted  bool
	Sync    *sync.State
	Arches  []string
	Self    string // this page, for the filter form
	Server  string // the pacman.conf Server line
	// SigLevel is the pacman.conf SigLevel of a hosted repo ("" for the
	// others: pacman's default suits what their upstream signs).
	SigLevel string
	Key      *pgp.Key
	KeyURL   string // where pacman-key's --add finds the key
}

func (u *UI) repo(w http.ResponseWriter, r *http.Request) {
	distro, repo := r.PathValue("distro"), r.PathValue("repo")
	var rv *api.Repo
	for _, dv := range u.api.Repos() {
		if dv.Name != distro {
			continue
		}
		for i := range dv.Repos {
			if dv.Repos[i].Name == repo {
				rv = &dv.Repos[i]
			}
		}
	}
	if rv == nil {
		u.fail(w, r, http.StatusNotFound, "There is no repo "+distro+"/"+repo+".")
		return
	}
	d := repoData{Row: u.repoRow(distro, *rv, syncStates(u.api.Status().Sync)), Filter: r.URL.Query().Get("q"), Hosted: rv.Mode == config.ModeHosted}
	d.Sync = d.Row.Fresh.Sync
	arches := u.cfg.Distros[distro].Arch
	d.Arches, d.Self = arches, repoURL(distro, repo)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	d.Server = scheme + "://" + r.Host + "/" + distro + "/" + u.cfg.Distros[distro].Layout
	if k, ok := u.api.Key(distro, repo); ok {
		d.Key, d.KeyURL = &k, scheme+"://"+r.Host+"/api/v1/repos/"+distro+"/"+repo+"/key"
	}
	if d.Hosted {
		d.SigLevel = u.sigLevel(d.Key != nil)
	}
	d.Arch = r.URL.Query().Get("arch")
	if !slices.Contains(arches, d.Arch) {
		d.Arch = arches[0]
	}
	res, err := u.api.Packages(distro, repo, d.Arch, d.Filter, pageParam(r), perPage)
	if err != nil {
		if api.HTTPStatus(err) != http.StatusNotFound {
			u.failErr(w, r, err)
			return
		}
		d.ListErr = err.Error()
	}
	d.Page = res
	d.Pager = newPager(r.URL, max(res.Page, 1), perPage, res.Total)
	for _, s := range res.Packages {
		d.Rows = append(d.Rows, u.resultRow(api.Ref{Distro: distro, Repo: repo, Arch: d.Arch, Package: s}))
	}
	if d.Hosted {
		d.Jobs = u.jobs(r, distro, repo, 20)
	}
	u.render(w, r, http.StatusOK, "repo", page{Title: distro + "/" + repo, Nav: "repos", Data: d})
}

type pkgData struct {
	api.Details
	Distro, Repo, Arch string
	RepoHref           string
	FileHref, SigHref  string // the package file and its .sig in the tree
	SigInDB            bool   // %PGPSIG% in the db entry
	SigFile            bool   // a .sig is in the tree
	Built              time.Time
	Depends            []depLink
	OptDepends         []depLink
	MakeDepends        []depLink
	CheckDepends       []depLink
	Provides           []string
	Carriers           []resultRow
}

// depLink is a dependency and where it leads: the package of that name,
// or else the first that provides it.
type depLink struct {
	Text, Href, Via string // Via: the provider's name when it differs
	Others          int    // more providers
}

func (u *UI) pkg(w http.ResponseWriter, r *http.Request) {
	distro, repo, arch, name := r.PathValue("distro"), r.PathValue("repo"), r.PathValue("arch"), r.PathValue("name")
	p, err := u.api.Package(distro, repo, arch, name)
	if err != nil {
		u.failErr(w, r, err)
		return
	}
	dir := u.cfg.RepoDir(distro, repo, arch)
	d := pkgData{Details: p, Distro: distro, Repo: repo, Arch: arch, RepoHref: repoURL(distro, repo),
		SigInDB: p.PGPSig != "", Built: time.Unix(p.BuildDate, 0), Provides: p.Provides}
	if p.Filename != "" {
		d.FileHref = u.folderURL(distro, repo, arch) + url.PathEscape(p.Filename)
		if _, err := u.tree.Stat(dir + "/" + p.Filename + ".sig"); err == nil {
			d.SigFile, d.SigHref = true, d.FileHref+".sig"
		}
	}
	links := func(deps []string) []depLink {
		out := make([]depLink, 0, len(deps))
		for _, dep := range deps {
			l := depLink{Text: dep}
			if provs := u.api.Providers(distro, arch, dep); len(provs) > 0 {
				first := provs[0]
				l.Href = pkgURL(first.Distro, first.Repo, first.Arch, first.Package.Name)
				if first.Package.Name != alpm.DepName(dep) {
					l.Via = first.Package.Name
				}
				l.Others = len(provs) - 1
			}
			out = append(out, l)
		}
		return out
	}
	d.Depends, d.OptDepends = links(p.Depends), links(p.OptDepends)
	d.MakeDepends, d.CheckDepends = links(p.MakeDepends), links(p.CheckDepends)
	for _, c := range u.api.Carriers(name) {
		d.Carriers = append(d.Carriers, u.resultRow(c))
	}
	u.render(w, r, http.StatusOK, "package", page{Title: name + " " + p.Version, Nav: "search", Data: d})
}

// sigLevel is what pacman can require of a hosted repo, signed with a key
// whose public half the API serves (.../key) or unsigned. A signed repo's
// dbs are always signed, and its packages are too when mirrord signs the
// uploads that come without a .sig (hosted.sign_packages) or refuses them
// (hosted.require_signatures); otherwise an unsigned package would fail
// Required. An unsigned repo gets Optional: pacman's default (Required
// for packages) would refuse every package uploaded without a .sig.
func (u *UI) sigLevel(signed bool) string {
	switch {
	case !signed:
		return "Optional"
	case u.cfg.Hosted.SignPackages || u.cfg.Hosted.RequireSignatures:
		return "Required"
	default:
		return "DatabaseRequired PackageOptional"
	}
}
