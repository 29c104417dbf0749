package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/internal/alpm"
)

// Mix is one run of `mix`: a mirrord binary started on a fresh
// data dir in front of an in-process upstream, loaded by Clients
// connections for Duration with a mix of cache hits, cold misses of one
// shared file and of distinct files, db revalidations and uploads. Every
// body is checked byte for byte; every upload that got 202 must be
// published by the end.
type Mix struct {
	Binary   string
	Clients  int
	Duration time.Duration
	Hot      int // files warmed before the run
	Cold     int // files never fetched before the run
	Uploads  int // packages ready to upload (each at most once)
	Log      io.Writer
}

// MixReport is what a mix run measured. Latencies are in milliseconds.
type MixReport struct {
	Clients        int                  `json:"clients"`
	Seconds        float64              `json:"seconds"`
	Requests       int64                `json:"requests"`
	Errors         int64                `json:"errors"`
	ReqPerSec      float64              `json:"req_per_sec"`
	Latency        Summary              `json:"latency_ms"`
	Kinds          map[string]*KindStat `json:"kinds"`
	FirstErrors    []string             `json:"first_errors,omitempty"`
	PeakRSSMiB     float64              `json:"peak_rss_mib"`
	PeakFDs        int                  `json:"peak_fds"`
	Goroutines     GoroutineReport      `json:"goroutines"`
	UpstreamReqs   int                  `json:"upstream_requests"`
	UploadsAcked   int                  `json:"uploads_acked"`
	UploadsLost    int                  `json:"uploads_lost"`
	DaemonWarnings int                  `json:"daemon_warnings"`
	CleanExit      bool                 `json:"clean_exit"`
}

// KindStat is one kind of request's share.
type KindStat struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Latency  Summary `json:"latency_ms"`
	lat      []time.Duration
}

// GoroutineReport is mirrord's go_goroutines before the load (idle,
// after warming), at its peak, and after the clients closed their
// connections, with how long it took to get back.
type GoroutineReport struct {
	Before      int     `json:"before"`
	Peak        int     `json:"peak"`
	After       int     `json:"after"`
	SettleSecs  float64 `json:"settle_seconds"`
	BackToStart bool    `json:"back_to_baseline"`
}

const mixToken = "mirrord-load-token"

var kinds = []struct {
	name   string
	weight int
}{{"hit", 66}, {"miss_same", 8}, {"miss_distinct", 8}, {"revalidate", 14}, {"upload", 4}}

func mixCmd(args []string) error {
	fs := pflag.NewFlagSet("mix", pflag.ContinueOnError)
	m := Mix{Log: os.Stderr}
	fs.StringVar(&m.Binary, "binary", "bin/mirrord", "the mirrord binary to start")
	fs.IntVar(&m.Clients, "clients", 1000, "concurrent connections")
	fs.DurationVar(&m.Duration, "duration", 60*time.Second, "how long to load")
	fs.IntVar(&m.Hot, "hot", 200, "files cached before the run (hits)")
	fs.IntVar(&m.Cold, "cold", 20000, "files not cached before the run (misses)")
	fs.IntVar(&m.Uploads, "uploads", 1500, "packages to upload at most")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep, err := m.Run(context.Background())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteTable(os.Stdout)
	}
	if rep.Errors > 0 || rep.UploadsLost > 0 || !rep.Goroutines.BackToStart || !rep.CleanExit {
		return fmt.Errorf("mix: %d errors, %d uploads lost, goroutines back to baseline %v, clean exit %v",
			rep.Errors, rep.UploadsLost, rep.Goroutines.BackToStart, rep.CleanExit)
	}
	return nil
}

// fixture is the upstream tree and what each file must be.
type fixture struct {
	root    string
	hot     []string
	cold    []string
	content map[string][]byte // file name -> bytes
	uploads [][]byte          // package files, in upload order
}

func (m *Mix) logf(format string, a ...any) {
	if m.Log != nil {
		fmt.Fprintf(m.Log, "mirrord-load mix: "+format+"\n", a...)
	}
}

func (m *Mix) fixture(dir string) (*fixture, error) {
	fx := &fixture{root: filepath.Join(dir, "upstream"), content: map[string][]byte{}}
	repo := filepath.Join(fx.root, "core/os/x86_64")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return nil, err
	}
	var pkgs []*alpm.Package
	add := func(name string, size int) (string, error) {
		file := name + "-1.0-1-x86_64.pkg.tar.zst"
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(repo, file), b, 0o644); err != nil {
			return "", err
		}
		fx.content[file] = b
		sum := sha256.Sum256(b)
		pkgs = append(pkgs, &alpm.Package{Filename: file, Name: name, Base: name, Version: "1.0-1", Arch: "x86_64",
			CSize: int64(size), SHA256Sum: hex.EncodeToString(sum[:]), Desc: "load test file"})
		return file, nil
	}
	for i := range m.Hot {
		f, err := add(fmt.Sprintf("hot%05d", i), 4<<10+mrand.IntN(60<<10))
		if err != nil {
			return nil, err
		}
		fx.hot = append(fx.hot, f)
	}
	for i := range m.Cold {
		f, err := add(fmt.Sprintf("cold%06d", i), 1<<10+mrand.IntN(8<<10))
		if err != nil {
			return nil, err
		}
		fx.cold = append(fx.cold, f)
	}
	db, err := os.Create(filepath.Join(repo, "core.db.tar.gz"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := alpm.WriteDB(db, pkgs, alpm.WriteOptions{ModTime: time.Now()}); err != nil {
		return nil, err
	}
	if err := os.Symlink("core.db.tar.gz", filepath.Join(repo, "core.db")); err != nil {
		return nil, err
	}
	for i := range m.Uploads {
		var buf bytes.Buffer
		name := fmt.Sprintf("up%05d", i)
		pi := &alpm.PKGINFO{Package: alpm.Package{Name: name, Base: name, Version: "1-1", Desc: "upload", Arch: "x86_64",
			URL: "https://example.org", BuildDate: 1795824270, Packager: "load <load@example.org>", ISize: 64, Licenses: []string{"MIT"}}}
		if err := alpm.WritePackage(&buf, pi, []alpm.PackageFile{{Name: "usr/share/" + name + "/data", Body: bytes.Repeat([]byte("x"), 64)}}, alpm.Zstd); err != nil {
			return nil, err
		}
		fx.uploads = append(fx.uploads, buf.Bytes())
	}
	return fx, nil
}

var listenLine = regexp.MustCompile(`msg=serving listen=(\S+)`)

// daemonProc is the started mirrord.
type daemonProc struct {
	cmd      *exec.Cmd
	url      string
	warnings atomic.Int64
	exited   chan error

	mu   sync.Mutex
	tail []string // its last log lines, to show when it dies
}

// died says how the daemon ended and what it said last, if it has ended.
func (d *daemonProc) died(err error) error {
	select {
	case exit := <-d.exited:
		d.exited <- exit
		d.mu.Lock()
		defer d.mu.Unlock()
		return fmt.Errorf("%w\nmirrord exited (%v); its last lines:\n%s", err, exit, strings.Join(d.tail, "\n"))
	case <-time.After(5 * time.Second):
		return err
	}
}

func (m *Mix) start(dir, upstreamAddr string) (*daemonProc, error) {
	sum := sha256.Sum256([]byte(mixToken))
	cfg := fmt.Sprintf(`
cache: {db_max_age: 1s}
hosted: {workers: 4, debounce: 500ms, max_delay: 5s}
api:
  tokens:
    - {name: load, sha256: %s, repos: [archlinux/loadrepo]}
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["http://%s/$repo/os/$arch"]
    repos:
      core: {mode: proxy}
      loadrepo: {mode: hosted}
`, hex.EncodeToString(sum[:]), upstreamAddr)
	path := filepath.Join(dir, "mirrord.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d := &daemonProc{exited: make(chan error, 1)}
	d.cmd = exec.Command(m.Binary, "serve", "--config", path, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	d.cmd.Env = append(os.Environ(), "MIRRORD_LOG_LEVEL=info")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", m.Binary, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			if d.tail = append(d.tail, line); len(d.tail) > 60 {
				d.tail = d.tail[1:]
			}
			d.mu.Unlock()
			if mm := listenLine.FindStringSubmatch(line); mm != nil {
				addr <- mm[1]
			}
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				if d.warnings.Add(1) <= 5 {
					m.logf("daemon: %s", line)
				}
			}
		}
		d.exited <- d.cmd.Wait()
	}()
	select {
	case a := <-addr:
		d.url = "http://" + a
		return d, nil
	case err := <-d.exited:
		return nil, fmt.Errorf("mirrord exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		return nil, errors.New("mirrord did not listen within 60s")
	}
}

// Run sets up, loads, checks and tears down.
func (m *Mix) Run(ctx context.Context) (*MixReport, error) {
	if m.Clients < 1 || m.Duration <= 0 || m.Hot < 1 || m.Cold < 1 {
		return nil, errors.New("mix: need clients, duration, hot and cold files")
	}
	dir, err := os.MkdirTemp("", "mirrord-mix-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	m.logf("writing %d hot, %d cold files and %d upload packages", m.Hot, m.Cold, m.Uploads)
	fx, err := m.fixture(dir)
	if err != nil {
		return nil, fmt.Errorf("mix: fixture: %w", err)
	}
	up := newUpstream(fx.root, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	usrv := &http.Server{Handler: up}
	go usrv.Serve(ln)
	defer usrv.Close()

	d, err := m.start(dir, ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer d.cmd.Process.Kill()
	client := newHTTPClient(m.Clients)
	base := d.url + "/archlinux/core/os/x86_64/"
	for _, f := range fx.hot {
		if err := check(client, base+f, fx.content[f]); err != nil {
			return nil, fmt.Errorf("mix: warm %s: %w", f, err)
		}
	}
	// mirrord's idle connections to the upstream hold goroutines too:
	// closed before each count, so that both counts are of the same state.
	client.CloseIdleConnections()
	closeUp := func() { usrv.SetKeepAlivesEnabled(false) }
	before, _, err := settle(d.url, 0, 10*time.Second, closeUp)
	usrv.SetKeepAlivesEnabled(true)
	if err != nil {
		return nil, err
	}
	up.Reset()

	rep := &MixReport{Clients: m.Clients, Kinds: map[string]*KindStat{}}
	rep.Goroutines.Before = before
	stopSampling := m.sample(d, rep)
	m.logf("loading %s with %d connections for %v (mirrord pid %d, %d goroutines idle)", d.url, m.Clients, m.Duration, d.cmd.Process.Pid, before)
	acked := m.load(ctx, client, d.url, fx, rep)
	stopSampling()
	rep.UpstreamReqs = up.files.Total()

	client.CloseIdleConnections()
	after, took, err := settle(d.url, before+5, 60*time.Second, closeUp)
	if err != nil {
		return nil, d.died(err)
	}
	rep.Goroutines.After, rep.Goroutines.SettleSecs = after, took.Seconds()
	rep.Goroutines.BackToStart = after <= before+5
	rep.UploadsAcked = len(acked)
	for _, id := range acked {
		if s := waitJob(d.url, id); s != "done" {
			rep.UploadsLost++
			m.logf("upload job %s ended %s", id, s)
		}
	}
	rep.DaemonWarnings = int(d.warnings.Load())
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		rep.CleanExit = err == nil
	case <-time.After(60 * time.Second):
	}
	return rep, nil
}

// load runs the clients and returns the job ids of the acknowledged uploads.
func (m *Mix) load(ctx context.Context, client *http.Client, url string, fx *fixture, rep *MixReport) []string {
	ctx, cancel := context.WithTimeout(ctx, m.Duration)
	defer cancel()
	var coldNext, uploadNext atomic.Int64
	var same atomic.Pointer[string]
	first := fx.cold[len(fx.cold)-1]
	same.Store(&first)
	// The shared cold file moves on every 200 ms: many clients miss on it
	// together, then it is a hit.
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f := fx.cold[int(coldNext.Add(1))%len(fx.cold)]
				same.Store(&f)
			}
		}
	}()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	type tally struct {
		lat   map[string][]time.Duration
		errs  map[string]int64
		first []string
		acked []string
		reqs  map[string]int64
	}
	tallies := make([]tally, m.Clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range tallies {
		wg.Go(func() {
			tl := &tallies[i]
			tl.lat, tl.errs, tl.reqs = map[string][]time.Duration{}, map[string]int64{}, map[string]int64{}
			for ctx.Err() == nil {
				w := mrand.IntN(total)
				kind := kinds[0].name
				for _, k := range kinds {
					if w < k.weight {
						kind = k.name
						break
					}
					w -= k.weight
				}
				t0 := time.Now()
				var err error
				var jobID string
				switch kind {
				case "hit":
					f := fx.hot[mrand.IntN(len(fx.hot))]
					err = check(client, url+"/archlinux/core/os/x86_64/"+f, fx.content[f])
				case "miss_same":
					f := *same.Load()
					err = check(client, url+"/archlinux/core/os/x86_64/"+f, fx.content[f])
				case "miss_distinct":
					f := fx.cold[int(coldNext.Add(1))%len(fx.cold)]
					err = check(client, url+"/archlinux/core/os/x86_64/"+f, fx.content[f])
				case "revalidate":
					err = revalidate(client, url+"/archlinux/core/os/x86_64/core.db", i%2 == 0)
				case "upload":
					n := int(uploadNext.Add(1)) - 1
					if n >= len(fx.uploads) {
						continue // all uploaded: no more of this kind
					}
					jobID, err = upload(client, url, n, fx.uploads[n])
				}
				if ctx.Err() != nil && err != nil {
					break // cut by the end of the run, not the server's fault
				}
				tl.reqs[kind]++
				tl.lat[kind] = append(tl.lat[kind], time.Since(t0))
				if err != nil {
					tl.errs[kind]++
					if len(tl.first) < 3 {
						tl.first = append(tl.first, kind+": "+err.Error())
					}
				}
				if jobID != "" {
					tl.acked = append(tl.acked, jobID)
				}
			}
		})
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	var all []time.Duration
	var acked []string
	for _, tl := range tallies {
		for k, l := range tl.lat {
			ks := rep.Kinds[k]
			if ks == nil {
				ks = &KindStat{}
				rep.Kinds[k] = ks
			}
			ks.lat = append(ks.lat, l...)
			ks.Requests += tl.reqs[k]
			ks.Errors += tl.errs[k]
			rep.Requests += tl.reqs[k]
			rep.Errors += tl.errs[k]
			all = append(all, l...)
		}
		if len(rep.FirstErrors) < 10 {
			rep.FirstErrors = append(rep.FirstErrors, tl.first...)
		}
		acked = append(acked, tl.acked...)
	}
	for _, ks := range rep.Kinds {
		ks.Latency = summarize(ks.lat)
		ks.lat = nil
	}
	rep.Latency = summarize(all)
	rep.ReqPerSec = float64(rep.Requests) / rep.Seconds
	return acked
}

// check GETs url and compares the body with want.
func check(client *http.Client, url string, want []byte) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if !bytes.Equal(body, want) {
		return fmt.Errorf("GET %s: %d bytes that are not the file's %d", url, len(body), len(want))
	}
	return nil
}

// revalidate GETs the db, conditionally when cond: 200 or 304 are right.
func revalidate(client *http.Client, url string, cond bool) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if cond {
		req.Header.Set("If-Modified-Since", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: body: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotModified {
		return nil
	}
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		return fmt.Errorf("GET %s: %s, %d bytes", url, resp.Status, len(body))
	}
	return nil
}

// upload POSTs a package and returns its job id.
func upload(client *http.Client, url string, n int, pkg []byte) (string, error) {
	name := fmt.Sprintf("up%05d-1-1-x86_64.pkg.tar.zst", n)
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/repos/archlinux/loadrepo/packages?filename="+name, bytes.NewReader(pkg))
	req.Header.Set("Authorization", "Bearer "+mixToken)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Job, Error string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || out.Job == "" {
		return "", fmt.Errorf("upload %s: %s %s", name, resp.Status, out.Error)
	}
	return out.Job, nil
}

// waitJob long-polls a job until it ends; "" when it cannot be read.
func waitJob(url, id string) string {
	for range 10 {
		resp, err := http.Get(url + "/api/v1/jobs/" + id + "?wait=30s")
		if err != nil {
			return "unreadable: " + err.Error()
		}
		var j struct{ Status, Error string }
		json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if j.Status == "done" || j.Status == "failed" {
			if j.Error != "" {
				return j.Status + ": " + j.Error
			}
			return j.Status
		}
	}
	return "still pending"
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func goroutines(url string) (int, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	mm := goroutinesRE.FindSubmatch(b)
	if mm == nil {
		return 0, errors.New("no go_goroutines in /metrics")
	}
	return strconv.Atoi(string(mm[1]))
}

// settle polls go_goroutines every 100 ms until it is at most limit (0:
// until it stops changing) or timeout passed, and returns the last value.
// Each poll is one short request of its own, closed at once. closeUp runs
// before each poll: the upstream closes mirrord's connections to it only
// once they are idle, or 5 s old if they never carried a request.
func settle(url string, limit int, timeout time.Duration, closeUp func()) (int, time.Duration, error) {
	start := time.Now()
	last := -1
	for {
		closeUp()
		n, err := goroutines(url)
		if err != nil {
			return 0, 0, err
		}
		http.DefaultClient.CloseIdleConnections()
		if (limit > 0 && n <= limit) || (limit == 0 && n == last) || time.Since(start) > timeout {
			return n, time.Since(start), nil
		}
		last = n
		time.Sleep(100 * time.Millisecond) // polling another process: no signal to wait on
	}
}

// sample records mirrord's peak RSS, open files and goroutines every
// second until the returned stop is called.
func (m *Mix) sample(d *daemonProc, rep *MixReport) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	pid := d.cmd.Process.Pid
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil && len(ents) > rep.PeakFDs {
				rep.PeakFDs = len(ents)
			}
			if n, err := goroutines(d.url); err == nil && n > rep.Goroutines.Peak {
				rep.Goroutines.Peak = n
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		// VmHWM is the peak resident set of the whole run.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
					kb, _ := strconv.ParseFloat(f[1], 64)
					rep.PeakRSSMiB = kb / 1024
				}
			}
		}
	}
}

// WriteTable prints the report for a person.
func (r *MixReport) WriteTable(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "connections %d for %.1f s\n", r.Clients, r.Seconds)
	fmt.Fprintf(&b, "requests    %d, %.0f req/s, %d errors\n", r.Requests, r.ReqPerSec, r.Errors)
	fmt.Fprintf(&b, "%-14s %9s %7s %9s %9s %9s\n", "kind", "requests", "errors", "p50 ms", "p99 ms", "max ms")
	for _, k := range kinds {
		if ks := r.Kinds[k.name]; ks != nil {
			fmt.Fprintf(&b, "%-14s %9d %7d %9.1f %9.1f %9.1f\n", k.name, ks.Requests, ks.Errors, ks.Latency.Median, ks.Latency.P99, ks.Latency.Max)
		}
	}
	fmt.Fprintf(&b, "%-14s %9d %7d %9.1f %9.1f %9.1f\n", "all", r.Requests, r.Errors, r.Latency.Median, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(&b, "upstream    %d requests\n", r.UpstreamReqs)
	fmt.Fprintf(&b, "uploads     %d acknowledged, %d not published\n", r.UploadsAcked, r.UploadsLost)
	fmt.Fprintf(&b, "mirrord     peak RSS %.1f MiB, peak open files %d, %d warnings in its log, clean exit %v\n", r.PeakRSSMiB, r.PeakFDs, r.DaemonWarnings, r.CleanExit)
	g := r.Goroutines
	fmt.Fprintf(&b, "goroutines  %d before, %d peak, %d after (%.1f s to settle; back to baseline %v)\n", g.Before, g.Peak, g.After, g.SettleSecs, g.BackToStart)
	for _, e := range r.FirstErrors {
		fmt.Fprintf(&b, "error       %s\n", e)
	}
	io.WriteString(w, b.String())
}
