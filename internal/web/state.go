package web

import (
	"errors"
	"math"
	"time"

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

// Traffic is the tree's traffic since start, as the home page shows it:
// the same counters the Grafana dashboard reads from /metrics.
type Traffic struct {
	Requests        int64 // file requests answered with a file or an error (a not found is neither)
	Hits            int64 // of Requests, answered from the tree without asking upstream
	Coalesced       int64 // of Requests, joined a fetch already in flight
	Served, Fetched int64 // bytes sent to clients, fetched from upstream
	InflightReaders int64 // clients streaming a file still being fetched
}

// TrafficSource is where the UI reads the Traffic: the proxy's request
// counts and the fetcher's bytes, combined by cmd/mirrord.
type TrafficSource interface {
	Traffic() Traffic
}

// trafficCard is the home page's view of the Traffic.
type trafficCard struct {
	Traffic
	Known    bool    // a TrafficSource was given
	HitRatio float64 // Hits/Requests; NaN before any request
}

// readTraffic reads the source, if any. The hit ratio is requests answered
// from the tree without asking upstream over all requests that were
// answered with a file or an error.
func (u *UI) readTraffic() trafficCard {
	c := trafficCard{HitRatio: math.NaN()}
	if u.traffic == nil {
		return c
	}
	c.Traffic, c.Known = u.traffic.Traffic(), true
	if c.Requests > 0 {
		c.HitRatio = float64(c.Hits) / float64(c.Requests)
	}
	return c
}
