package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/store"
)

// db resolves distro/repo/arch to its parsed db.
func (h *Handler) db(distro, repo, arch string) (*catalog.DB, error) {
	d, _, err := h.repoConfig(distro, repo)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(d.Arch, arch) {
		return nil, errorf(http.StatusNotFound, "no arch "+strconv.Quote(arch)+" in "+distro)
	}
	p, err := h.catalog.DB(h.cfg.RepoDir(distro, repo, arch) + "/" + repo + ".db")
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "no database of "+distro+"/"+repo+"/"+arch+" in the tree yet")
	}
	return p, err
}

const maxPerPage = 500

func (h *Handler) listPackages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, err := intParam(q, "page", 1, 1, 1<<30)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	perPage, err := intParam(q, "per_page", 50, 1, maxPerPage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.Packages(r.PathValue("distro"), r.PathValue("repo"), r.PathValue("arch"), q.Get("q"), page, perPage)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	last := max(1, (res.Total+perPage-1)/perPage)
	if link := linkHeader(r.URL, page, perPage, last); link != "" {
		w.Header().Set("Link", link)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(res.Total))
	writeJSON(w, http.StatusOK, res)
}

// linkHeader gives first, prev, next and last page links (RFC 8288), as
// GitHub's API does, keeping the query's other parameters.
func linkHeader(u *url.URL, page, perPage, last int) string {
	link := func(p int, rel string) string {
		q := u.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(perPage))
		return fmt.Sprintf("<%s?%s>; rel=%q", u.Path, q.Encode(), rel)
	}
	links := []string{link(1, "first")}
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(last, "last"))
	return strings.Join(links, ", ")
}

func intParam(q url.Values, key string, def, lo, hi int) (int, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, fmt.Sprintf("%s must be an integer from %d to %d", key, lo, hi))
	}
	return n, nil
}

func (h *Handler) getPackage(w http.ResponseWriter, r *http.Request) {
	p, err := h.Package(r.PathValue("distro"), r.PathValue("repo"), r.PathValue("arch"), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// key serves a hosted repo's public signing key, armored, for
// `pacman-key --add`.
func (h *Handler) key(w http.ResponseWriter, r *http.Request) {
	distro, repo := r.PathValue("distro"), r.PathValue("repo")
	if _, _, err := h.repoConfig(distro, repo); err != nil {
		h.fail(w, r, err)
		return
	}
	k, ok := h.Key(distro, repo)
	if !ok {
		h.fail(w, r, errorf(http.StatusNotFound, distro+"/"+repo+" is not signed (no hosted.signing_key)"))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/pgp-keys")
	hd.Set("Content-Disposition", `inline; filename="`+distro+"-"+repo+".asc\"")
	hd.Set("X-Key-Fingerprint", k.Fingerprint)
	hd.Set("Content-Length", strconv.Itoa(len(k.Armored)))
	w.Write(k.Armored)
}

func (h *Handler) repos(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"distros": h.Repos()})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
