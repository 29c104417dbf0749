package web

import (
	"errors"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
)

// syncStates indexes the sync states of /api/v1/status by repo
// ("distro/repo"): the UI shows what scripts see.
func syncStates(list []sync.State) map[string]sync.State {
	out := make(map[string]sync.State, len(list))
	for _, s := range list {
		out[s.Repo] = s
	}
	return out
}

// freshness is how current a repo is, in one word and a class for its
// colour: the "last sync and its state" of the repos table.
type freshness struct {
	State   string    // ok, syncing, failing, stale, never synced, on demand, not fetched, published, empty
	Class   string    // good, warn, bad, muted
	Updated time.Time // last sync, db fetch or db build
	What    string    // what Updated is: "synced", "db checked", "published"
	Detail  string    // the last error, the progress
	Sync    *sync.State
}

// staleAfter is how many sync intervals without a success make a mirror
// repo stale; contrib/prometheus/alerts.yml uses the same factor.
const staleAfter = 2

func (u *UI) freshness(distro, repo string, syncs map[string]sync.State) freshness {
	rc := u.cfg.Distros[distro].Repos[repo]
	switch rc.Mode {
	case config.ModeMirror:
		s, ok := syncs[distro+"/"+repo]
		if !ok {
			return freshness{State: "never synced", Class: "warn", What: "synced"}
		}
		f := freshness{Updated: s.LastSuccess, What: "synced", Sync: &s}
		interval := rc.SyncInterval
		if interval <= 0 {
			interval = time.Hour // sync.DefaultInterval
		}
		switch {
		case s.Running:
			f.State, f.Class = "syncing", "warn"
			if p := s.Progress; p != nil && p.FilesTotal > 0 {
				f.Detail = humanBytes(p.BytesDone) + " of " + humanBytes(p.BytesTotal)
			}
		case s.Failures > 0:
			f.State, f.Class, f.Detail = "failing", "bad", s.LastError
		case s.LastSuccess.IsZero():
			f.State, f.Class = "never synced", "warn"
		case time.Since(s.LastSuccess) > staleAfter*interval:
			f.State, f.Class = "stale", "bad"
		default:
			f.State, f.Class = "ok", "good"
		}
		return f
	case config.ModeProxy:
		m, ok := u.newestDB(distro, repo)
		if !ok {
			return freshness{State: "not fetched", Class: "muted", What: "db checked", Detail: "the db is fetched on the first pacman -Sy"}
		}
		return freshness{State: "on demand", Class: "good", What: "db checked", Updated: m.FetchedAt}
	default:
		m, ok := u.newestDB(distro, repo)
		if !ok {
			return freshness{State: "empty", Class: "muted", What: "published"}
		}
		return freshness{State: "published", Class: "good", What: "published", Updated: m.LastModified}
	}
}

// newestDB is the metadata of the repo's most recently changed db among
// its arches.
func (u *UI) newestDB(distro, repo string) (store.Meta, bool) {
	var newest store.Meta
	found := false
	for _, a := range u.cfg.Distros[distro].Arch {
		m, err := u.tree.Stat(u.cfg.RepoDir(distro, repo, a) + "/" + repo + ".db")
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				u.log.Warn("stat db", "repo", distro+"/"+repo, "arch", a, "err", err)
			}
			continue
		}
		if t := maxTime(m.FetchedAt, m.LastModified); !found || t.After(maxTime(newest.FetchedAt, newest.LastModified)) {
			newest, found = m, true
		}
	}
	return newest, found
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// traffic is what the metrics registry says of the tree's requests since
// start: the same counters the Grafana dashboard shows.
type traffic struct {
	Known           bool    // a registry was given
	Requests        float64 // file requests that found a file or failed (not not_found)
	Hits            float64
	HitRatio        float64 // Hits/Requests; NaN before any request
	Coalesced       float64
	Served, Fetched float64 // bytes
	InflightReaders float64
}

// traffic reads the metrics. The hit ratio is requests answered from the
// tree without asking upstream over all requests that were answered with
// a file or an error; a not_found is neither.
func (u *UI) traffic() traffic {
	t := traffic{HitRatio: math.NaN()}
	if u.gather == nil {
		return t
	}
	mfs, err := u.gather.Gather()
	if err != nil {
		u.log.Warn("gather metrics", "err", err)
	}
	t.Known = len(mfs) > 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "mirrord_requests_total":
				v := m.GetCounter().GetValue()
				switch label(m, "result") {
				case "not_found":
				case "hit":
					t.Hits += v
					t.Requests += v
				case "coalesced":
					t.Coalesced += v
					t.Requests += v
				default:
					t.Requests += v
				}
			case "mirrord_served_bytes_total":
				t.Served += m.GetCounter().GetValue()
			case "mirrord_fetched_bytes_total":
				t.Fetched += m.GetCounter().GetValue()
			case "mirrord_inflight_readers":
				t.InflightReaders += m.GetGauge().GetValue()
			}
		}
	}
	if t.Requests > 0 {
		t.HitRatio = t.Hits / t.Requests
	}
	return t
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
