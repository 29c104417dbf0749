package sync

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/faultserver"
	"github.com/mirrord/mirrord/internal/fetch"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/upstream"
)

const archDir = "core/os/x86_64"

// coreUpstream is an Arch-layout upstream with a core repo of n packages.
func coreUpstream(t *testing.T, sigs bool, names ...string) (*faultserver.Server, *upRepo) {
	t.Helper()
	root := t.TempDir()
	u := newUpRepo(t, root, archDir, "core")
	u.sigs = sigs
	for i, n := range names {
		u.add(n, "1.0-1", 2000+i*3000)
	}
	u.write()
	setLastupdate(t, root, 1000)
	return faultserver.NewTest(t, root), u
}

func archConfig(t *testing.T, servers ...*faultserver.Server) *config.Config {
	var ups []string
	for _, s := range servers {
		ups = append(ups, s.URL()+"/$repo/os/$arch")
	}
	return mirrorConfig(t.TempDir(), "archlinux", "$repo/os/$arch", []string{"x86_64"}, ups, "core")
}

func mustSync(t *testing.T, e *env) {
	t.Helper()
	if err := e.sched.Sync(t.Context(), "archlinux", "core"); err != nil {
		t.Fatalf("Sync = %v, want nil", err)
	}
}

func TestFirstSyncCopiesTheTree(t *testing.T) {
	up, _ := coreUpstream(t, true, "alpha", "beta", "gamma", "delta")
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)

	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	if got, _ := os.ReadFile(filepath.Join(e.tree(), "archlinux/lastupdate")); string(got) != "1000\n" {
		t.Errorf("lastupdate = %q, want %q", got, "1000\n")
	}
	if got, _ := os.ReadFile(filepath.Join(e.tree(), "archlinux/lastsync")); string(got) != "1800000000\n" {
		t.Errorf("lastsync = %q, want %q", got, "1800000000\n")
	}
	if left, _ := os.ReadDir(filepath.Join(e.dataDir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files after a sync", len(left))
	}
	st := e.sched.States()[0]
	if st.Repo != "archlinux/core" || st.Files != 8 || st.LastSuccess != e.clock.Now() || st.LastError != "" || st.Running {
		t.Errorf("state = %+v, want 8 files fetched and a success", st)
	}
	if _, err := json.Marshal(e.sched.States()); err != nil {
		t.Errorf("States do not marshal: %v", err)
	}
	for name, want := range map[string]float64{
		"mirrord_sync_files_total":                    8,
		"mirrord_sync_failures_total":                 0,
		"mirrord_sync_last_success_timestamp_seconds": 1_800_000_000,
	} {
		if got := gather(t, e, name); got != want {
			t.Errorf("%s{repo=archlinux/core} = %v, want %v", name, got, want)
		}
	}
}

// gather returns the value of a metric of repo archlinux/core.
func gather(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "archlinux/core" {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s for archlinux/core", name)
	return 0
}

func TestResyncFetchesOnlyChangesAndPrunesLate(t *testing.T) {
	up, u := coreUpstream(t, false, "alpha", "beta", "gamma", "delta")
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)
	oldBeta := "beta-1.0-1-x86_64.pkg.tar.zst"

	newE := u.add("epsilon", "1.0-1", 5000)
	newB := u.add("beta", "2.0-1", 4000)
	u.remove("gamma")
	u.write()
	setLastupdate(t, up.Root(), 2000)
	up.Reset()
	mustSync(t, e)

	// Exactly the new packages, and their signatures (404 upstream).
	want := map[string]int{}
	for _, f := range []string{newE, newE + ".sig", newB, newB + ".sig"} {
		want["/"+archDir+"/"+f] = 1
	}
	got := packageRequests(up)
	if len(got) != len(want) {
		t.Errorf("package requests = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("requests of %s = %d, want %d", k, got[k], n)
		}
	}
	tree := filepath.Join(e.tree(), "archlinux", archDir)
	gone := []string{oldBeta, "gamma-1.0-1-x86_64.pkg.tar.zst"}
	for _, f := range gone {
		if _, err := os.Stat(filepath.Join(tree, f)); err != nil {
			t.Errorf("%s removed right away; want it kept for prune_after: %v", f, err)
		}
	}

	// Nothing changed upstream: one request, lastupdate.
	up.Reset()
	e.clock.Add(59 * time.Minute)
	mustSync(t, e)
	if n := up.Total(); n != 1 {
		t.Errorf("no-change resync made %d requests (%v), want 1 (lastupdate)", n, up.Log())
	}
	for _, f := range gone {
		if _, err := os.Stat(filepath.Join(tree, f)); err != nil {
			t.Errorf("%s pruned before prune_after: %v", f, err)
		}
	}
	e.clock.Add(time.Minute)
	mustSync(t, e)
	for _, f := range gone {
		if _, err := os.Stat(filepath.Join(tree, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in the tree after prune_after: %v", f, err)
		}
	}
	sameTree(t, listFiles(t, tree, nil), listFiles(t, filepath.Join(up.Root(), archDir), func(n string) bool {
		return n == oldBeta || strings.HasPrefix(n, "gamma")
	}))
	if got := gather(t, e, "mirrord_sync_pruned_files_total"); got != 2 {
		t.Errorf("pruned = %v, want 2", got)
	}
}

func TestResyncWithoutLastupdateIsConditional(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha", "beta")
	os.Remove(filepath.Join(up.Root(), "lastupdate"))
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)
	up.Reset()
	start := time.Now()
	mustSync(t, e)
	took := time.Since(start)
	var got []string
	for _, l := range up.Log() {
		got = append(got, l.Path+" "+strconv.Itoa(l.Status))
	}
	want := []string{"/lastupdate 404", "/core/os/x86_64/core.db 304", "/core/os/x86_64/core.files 304"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("no-change resync requests = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(e.tree(), "archlinux/lastupdate")); err == nil {
		t.Error("lastupdate written though upstream has none")
	}
	t.Logf("no-change resync took %v", took)
}

func TestCorruptMirrorIsLeftOut(t *testing.T) {
	a, _ := coreUpstream(t, false, "alpha", "beta", "gamma", "delta", "epsilon")
	b := faultserver.NewTest(t, a.Root())
	for _, f := range []string{"beta-1.0-1-x86_64.pkg.tar.zst", "delta-1.0-1-x86_64.pkg.tar.zst"} {
		a.SetFault("/"+archDir+"/"+f, faultserver.Fault{Corrupt: true})
	}
	e := newEnv(t, archConfig(t, a, b))
	mustSync(t, e)
	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(a.Root(), archDir), nil))
}

func TestFailedSyncKeepsThePreviousState(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(up *faultserver.Server, u *upRepo)
	}{
		{"db 404", func(up *faultserver.Server, u *upRepo) {
			u.add("zeta", "1.0-1", 100)
			u.write()
			up.SetFault("/core/os/x86_64/core.db", faultserver.Fault{Status: 404})
		}},
		{"db cut short", func(up *faultserver.Server, u *upRepo) {
			u.add("zeta", "1.0-1", 100)
			u.write()
			up.SetFault("/core/os/x86_64/core.db", faultserver.Fault{ShortBody: 50})
		}},
		{"package missing upstream", func(up *faultserver.Server, u *upRepo) {
			f := u.add("zeta", "1.0-1", 100)
			u.write()
			os.Remove(filepath.Join(up.Root(), archDir, f))
		}},
		{"package corrupt on the only mirror", func(up *faultserver.Server, u *upRepo) {
			f := u.add("zeta", "1.0-1", 100)
			u.write()
			up.SetFault("/"+archDir+"/"+f, faultserver.Fault{Corrupt: true})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, u := coreUpstream(t, false, "alpha", "beta")
			e := newEnv(t, archConfig(t, up))
			mustSync(t, e)
			tree := filepath.Join(e.tree(), "archlinux", archDir)
			before := listFiles(t, tree, nil)

			tc.break_(up, u)
			setLastupdate(t, up.Root(), 2000)
			if err := e.sched.Sync(t.Context(), "archlinux", "core"); err == nil {
				t.Fatal("Sync = nil, want an error")
			}
			after := listFiles(t, tree, nil)
			for _, f := range []string{"core.db", "core.files"} {
				if after[f] != before[f] {
					t.Errorf("%s changed by a failed sync", f)
				}
			}
			for f := range after {
				if strings.HasPrefix(f, "zeta") {
					t.Errorf("%s in the tree: a file that fails checks was kept", f)
				}
			}
			st := e.sched.States()[0]
			if st.LastError == "" || st.Failures != 1 || st.LastUpdate != "1000" {
				t.Errorf("state = %+v, want an error, 1 failure, lastupdate still 1000", st)
			}
			if got := gather(t, e, "mirrord_sync_failures_total"); got != 1 {
				t.Errorf("failures = %v, want 1", got)
			}
			// Fixed upstream: the next sync completes.
			up.ClearFaults()
			u.add("zeta", "1.0-1", 100)
			u.write()
			mustSync(t, e)
			sameTree(t, listFiles(t, tree, nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
		})
	}
}

// TestRestartDoesNotRefetch stops a sync midway (a package fails), closes
// everything as a crash would leave it, and checks that the restarted sync
// asks only for what was not verified.
func TestRestartDoesNotRefetch(t *testing.T) {
	names := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	up, _ := coreUpstream(t, false, names...)
	up.SetFault("/"+archDir+"/a8-1.0-1-x86_64.pkg.tar.zst", faultserver.Fault{Status: 403, Times: 1})
	e := newEnv(t, archConfig(t, up))
	if err := e.sched.Sync(t.Context(), "archlinux", "core"); err == nil {
		t.Fatal("Sync = nil, want the 403")
	}
	e.close()
	if _, err := os.Stat(filepath.Join(e.tree(), "archlinux", archDir, "core.db")); err == nil {
		t.Fatal("core.db published by a sync that failed")
	}
	had := listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil)
	up.Reset()
	e.open()
	mustSync(t, e)
	for f := range had {
		if n := up.Requests("/" + archDir + "/" + f); n != 0 {
			t.Errorf("%s fetched %d times after the restart, though verified before", f, n)
		}
	}
	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
}

// TestSharesTheProxysDownloads checks that a file the proxy has cached, or
// is fetching, is not fetched again by the sync.
func TestSharesTheProxysDownloads(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha", "beta")
	e := newEnv(t, archConfig(t, up))
	ms, err := e.up.Mirrors([]string{up.URL() + "/$repo/os/$arch"})
	if err != nil {
		t.Fatal(err)
	}
	proxyJob := func(file string) fetch.Job {
		return fetch.Job{Rel: "archlinux/" + archDir + "/" + file, Repo: "archlinux/core", Mirrors: ms,
			Request: upstream.Request{Repo: "core", Arch: "x86_64", File: file, Resumable: true}}
	}
	// alpha cached by the proxy before the sync; beta in flight, held.
	alpha, beta := "alpha-1.0-1-x86_64.pkg.tar.zst", "beta-1.0-1-x86_64.pkg.tar.zst"
	f, rd, _ := e.fetcher.Join(t.Context(), proxyJob(alpha))
	<-f.Done()
	rd.Close()
	gate := make(chan struct{})
	up.SetFault("/"+archDir+"/"+beta, faultserver.Fault{Gate: gate, GateAfter: 100})
	f, rd, _ = e.fetcher.Join(t.Context(), proxyJob(beta))
	defer rd.Close()
	<-up.Seen("/"+archDir+"/"+beta, 1)
	atBeta := make(chan struct{})
	e.sched.joined = func(rel string) {
		if strings.HasSuffix(rel, "/"+beta) {
			close(atBeta)
		}
	}
	done := make(chan error)
	go func() { done <- e.sched.Sync(context.Background(), "archlinux", "core") }()
	<-atBeta // the sync is past alpha and joined beta's flight
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-f.Done()
	for _, p := range []string{alpha, beta} {
		if n := up.Requests("/" + archDir + "/" + p); n != 1 {
			t.Errorf("requests of %s = %d, want 1", p, n)
		}
	}
	if st := e.sched.States()[0]; st.Files != 0 {
		t.Errorf("files fetched by the sync = %d, want 0: one file came from the proxy's cache, one from its flight", st.Files)
	}
}

func TestArchARMLayout(t *testing.T) {
	root := t.TempDir()
	for _, arch := range []string{"aarch64", "armv7h"} {
		for _, repo := range []string{"core", "alarm"} {
			u := newUpRepo(t, root, arch+"/"+repo, repo)
			u.add(repo+"-tool", "1.0-1", 3000)
			u.add("lib"+arch, "2.1-4", 1000)
			u.write()
		}
	}
	setLastupdate(t, root, 42)
	up := faultserver.NewTest(t, root)
	cfg := mirrorConfig(t.TempDir(), "archarm", "$arch/$repo", []string{"aarch64", "armv7h"}, []string{up.URL() + "/$arch/$repo"}, "core", "alarm")
	e := newEnv(t, cfg)
	if err := e.sched.Sync(t.Context(), "archarm", ""); err != nil {
		t.Fatal(err)
	}
	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archarm"), func(n string) bool { return n == "lastsync" }), listFiles(t, root, nil))
}

func TestDBSignatures(t *testing.T) {
	up, u := coreUpstream(t, false, "alpha", "beta")
	// A db that carries package signatures (%PGPSIG%): the .sig files
	// are written from it, without a request.
	for _, p := range u.pkgs {
		sig := []byte("sig of " + p.Filename)
		p.PGPSig = base64.StdEncoding.EncodeToString(sig)
		os.WriteFile(filepath.Join(up.Root(), archDir, p.Filename+".sig"), sig, 0o644)
	}
	u.write()
	dbSig := filepath.Join(up.Root(), archDir, "core.db.sig")
	os.WriteFile(dbSig, []byte("db signature 1"), 0o644)
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)
	tree := filepath.Join(e.tree(), "archlinux", archDir)
	sameTree(t, listFiles(t, tree, nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	for p, n := range packageRequests(up) {
		if strings.HasSuffix(p, ".sig") {
			t.Errorf("%s requested %d times; the db carries it", p, n)
		}
	}

	// Upstream drops its db signature with the next db: ours goes too.
	os.Remove(dbSig)
	u.add("gamma", "1-1", 10)
	u.write()
	setLastupdate(t, up.Root(), 2000)
	mustSync(t, e)
	if _, err := os.Stat(filepath.Join(tree, "core.db.sig")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("core.db.sig kept beside an unsigned db: %v", err)
	}
}

func TestTriggerAndRun(t *testing.T) {
	up, _ := coreUpstream(t, false, "alpha")
	cfg := archConfig(t, up)
	d := cfg.Distros["archlinux"]
	d.Repos["extra"] = config.Repo{Mode: config.ModeProxy}
	cfg.Distros["archlinux"] = d
	e := newEnv(t, cfg)

	for _, tc := range []struct{ distro, repo string }{{"nope", ""}, {"archlinux", "extra"}, {"archlinux", "nope"}, {"", ""}} {
		if err := e.sched.Trigger(tc.distro, tc.repo); !errors.Is(err, ErrUnknownRepo) {
			t.Errorf("Trigger(%q, %q) = %v, want ErrUnknownRepo", tc.distro, tc.repo, err)
		}
	}
	synced := make(chan error, 10)
	e.sched.afterSync = func(key string, err error) { synced <- err }
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error)
	go func() { ran <- e.sched.Run(ctx) }()
	if err := <-synced; err != nil { // a repo never synced starts at once
		t.Fatalf("first scheduled sync: %v", err)
	}
	if err := e.sched.Trigger("archlinux", ""); err != nil {
		t.Fatalf("Trigger = %v", err)
	}
	if err := <-synced; err != nil {
		t.Fatalf("triggered sync: %v", err)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if n := up.Requests("/lastupdate"); n != 2 {
		t.Errorf("lastupdate requests = %d, want 2 (two syncs)", n)
	}
}

// sigRequests adds the upstream GETs of package signatures in up's log
// to seen, by path, and returns how many there were.
func sigRequests(up *faultserver.Server, seen map[string]int) int {
	n := 0
	for p, c := range packageRequests(up) {
		if strings.HasSuffix(p, ".sig") {
			seen[p] += c
			n += c
		}
	}
	return n
}

func TestSignedRepoGetsEverySignature(t *testing.T) {
	var names []string
	for i := range 3 * sigProbes {
		names = append(names, fmt.Sprintf("p%02d", i))
	}
	up, u := coreUpstream(t, true, names...)
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)
	seen := map[string]int{}
	if n := sigRequests(up, seen); n != len(names) {
		t.Errorf("signature requests = %d, want %d (one per package)", n, len(names))
	}
	for _, p := range u.pkgs {
		if n := seen["/"+archDir+"/"+p.Filename+".sig"]; n != 1 {
			t.Errorf("requests of %s.sig = %d, want 1", p.Filename, n)
		}
	}
	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	if _, err := e.store.Get(keyUnsigned + "archlinux/" + archDir); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("signed repo marked unsigned: err = %v, want ErrNotFound", err)
	}
}

// TestUnsignedRepoIsProbed checks that a repo without signatures costs a
// sample of requests, not one per package, and that signatures are
// fetched again once upstream publishes them.
func TestUnsignedRepoIsProbed(t *testing.T) {
	var names []string
	for i := range 3 * sigProbes {
		names = append(names, fmt.Sprintf("p%02d", i))
	}
	up, u := coreUpstream(t, false, names...)
	e := newEnv(t, archConfig(t, up))
	mustSync(t, e)
	seen := map[string]int{}
	if n := sigRequests(up, seen); n != sigProbes {
		t.Errorf("first sync: signature requests = %d, want %d", n, sigProbes)
	}
	// lastupdate, the dbs and their signatures, the packages, the probes.
	if n, want := up.Total(), 5+len(names)+sigProbes; n != want {
		t.Errorf("first sync: %d requests, want %d", n, want)
	}
	sameTree(t, listFiles(t, filepath.Join(e.tree(), "archlinux", archDir), nil), listFiles(t, filepath.Join(up.Root(), archDir), nil))
	if _, err := e.store.Get(keyUnsigned + "archlinux/" + archDir); err != nil {
		t.Errorf("unsigned repo not marked: %v", err)
	}

	// New unsigned packages: only theirs are asked for.
	var added []string
	for _, n := range []string{"q1", "q2", "q3"} {
		added = append(added, u.add(n, "1.0-1", 1000))
	}
	u.write()
	setLastupdate(t, up.Root(), 2000)
	up.Reset()
	mustSync(t, e)
	before := len(seen)
	if n := sigRequests(up, seen); n != len(added) || len(seen) != before+len(added) {
		t.Errorf("second sync: %d signature requests (%d new), want %d, of the new packages", n, len(seen)-before, len(added))
	}
	for _, f := range added {
		if seen["/"+archDir+"/"+f+".sig"] != 1 {
			t.Errorf("second sync: %s.sig not asked for", f)
		}
	}

	// Upstream signs a new package: the repo counts as signed again, and
	// every signature not known absent is asked for.
	u.sigs = true
	signed := u.add("r1", "1.0-1", 1000)
	u.write()
	setLastupdate(t, up.Root(), 3000)
	up.Reset()
	mustSync(t, e)
	sigRequests(up, seen)
	if _, err := os.Stat(filepath.Join(e.tree(), "archlinux", archDir, signed+".sig")); err != nil {
		t.Errorf("signature of %s not fetched: %v", signed, err)
	}
	for _, p := range u.pkgs {
		if n := seen["/"+archDir+"/"+p.Filename+".sig"]; n != 1 {
			t.Errorf("requests of %s.sig over three syncs = %d, want 1", p.Filename, n)
		}
	}
	if _, err := e.store.Get(keyUnsigned + "archlinux/" + archDir); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("repo that signs still marked unsigned: err = %v", err)
	}
}

// TestProxyAndSyncVerifyAlike: a package the sync's new db names is
// checked against that db whoever fetches it first, the sync (a proxy
// client joins its flight) or a proxy client (the sync comes to the file
// later): upstream's wrong bytes fail both ways, and never reach the tree.
func TestProxyAndSyncVerifyAlike(t *testing.T) {
	alpha, zeta := "alpha-1.0-1-x86_64.pkg.tar.zst", "zeta-1.0-1-x86_64.pkg.tar.zst"
	for _, proxyFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("proxy first %v", proxyFirst), func(t *testing.T) {
			up, _ := coreUpstream(t, false, "alpha", "zeta")
			cfg := archConfig(t, up)
			cfg.Sync.Concurrency = 1 // the sync takes the files one by one, alpha first
			e := newEnv(t, cfg)
			ms := e.cat.Mirrors(catalog.Target{Distro: "archlinux", Repo: "core"})
			rel := "archlinux/" + archDir + "/" + zeta
			proxyJob := fetch.Job{Rel: rel, Repo: "archlinux/core", Mirrors: ms,
				Request: upstream.Request{Repo: "core", Arch: "x86_64", File: zeta, Resumable: true}}
			gate := make(chan struct{})
			held := alpha // the file the sync waits at while the proxy client comes
			if !proxyFirst {
				held = zeta
			}
			up.SetFault("/"+archDir+"/"+zeta, faultserver.Fault{Corrupt: true})
			up.SetFault("/"+archDir+"/"+held, faultserver.Fault{Corrupt: held == zeta, Gate: gate, GateAfter: 100})
			at := make(chan struct{})
			e.sched.joined = func(r string) {
				if strings.HasSuffix(r, "/"+held) {
					close(at)
				}
			}
			done := make(chan error, 1)
			go func() { done <- e.sched.Sync(context.Background(), "archlinux", "core") }()
			<-at // the sync announced its db and holds a flight
			f, rd, leader := e.fetcher.Join(t.Context(), proxyJob)
			if leader != proxyFirst {
				t.Fatalf("the proxy client leads the flight: %v, want %v", leader, proxyFirst)
			}
			if proxyFirst {
				<-f.Done() // before the sync gets to zeta
			}
			close(gate)
			<-f.Done()
			rd.Close()
			if err := f.Err(); !errors.Is(err, fetch.ErrVerify) {
				t.Errorf("the proxy client's flight of wrong bytes ended with %v, want ErrVerify", err)
			}
			if err := <-done; !errors.Is(err, fetch.ErrVerify) {
				t.Errorf("Sync = %v, want ErrVerify", err)
			}
			if _, err := os.Stat(filepath.Join(e.tree(), rel)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("wrong bytes of %s reached the tree (stat: %v)", zeta, err)
			}
		})
	}
}
