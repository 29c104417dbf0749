package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// contribConfig has one repo of each mode, so that every per-repo and
// per-mirror series exists (they are pre-created at zero) without traffic.
func contribConfig(upstream string) string {
	return fmt.Sprintf(`
distros:
  archlinux:
    layout: $repo/os/$arch
    arch: [x86_64]
    upstreams: ["%s/$repo/os/$arch"]
    repos:
      core: {mode: mirror, sync_interval: 1h}
      extra: {mode: proxy}
      custom: {mode: hosted}
`, upstream)
}

// exportedSeries scrapes /metrics and returns every series name in it
// (histograms as their _bucket, _sum and _count).
func exportedSeries(t *testing.T, d *daemon) map[string]bool {
	t.Helper()
	code, body, _ := d.get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bmirrord_[a-z0-9_]+\b`)

// checkNames fails for every mirrord metric in expr that mirrord does not
// export, and returns the names it found.
func checkNames(t *testing.T, where, expr string, exported map[string]bool) []string {
	t.Helper()
	names := metricName.FindAllString(expr, -1)
	for _, n := range names {
		if !exported[n] {
			t.Errorf("%s queries %s, which a running mirrord does not export", where, n)
		}
	}
	return names
}

// balanced reports whether (), [] and {} nest properly outside quotes.
func balanced(s string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inQuote := false
	for _, c := range s {
		switch {
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inQuote
}

// TestContrib checks contrib/grafana/mirrord.json and
// contrib/prometheus/alerts.yml against a running mirrord: every metric
// they query is exported, and their structure is what Grafana and
// Prometheus load (promtool is not available, so it is checked here).
func TestContrib(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler()) // the mirror sync fails: its series exist all the same
	defer up.Close()
	d := startDaemon(t, "", contribConfig(up.URL))
	exported := exportedSeries(t, d)
	if len(exported) < 20 {
		t.Fatalf("/metrics has only %d series", len(exported))
	}
	rs := readRules(t)
	staleThreshold := checkAlerts(t, rs, exported)
	checkDashboard(t, exported, staleThreshold)
	checkAdvice(t, d, rs)
}

type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) rules {
	t.Helper()
	data, err := os.ReadFile("../contrib/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rs rules
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, as in Prometheus
	if err := dec.Decode(&rs); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if len(rs.Groups) == 0 {
		t.Fatal("alerts.yml has no groups")
	}
	return rs
}

// Prometheus runs annotations as Go templates with these defined; here
// the functions print nothing.
var tmplFuncs = template.FuncMap{}

func init() {
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "printf", "title", "toUpper", "toLower"} {
		tmplFuncs[f] = func(v ...any) string { return "" }
	}
}

const tmplHeader = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

// checkAlerts validates the alert rules and returns the stale-sync
// threshold in seconds.
func checkAlerts(t *testing.T, rs rules, exported map[string]bool) float64 {
	t.Helper()
	seen := map[string]bool{}
	uses := map[string][]string{} // alert -> metrics
	stale := -1.0
	for _, g := range rs.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("alerts.yml: group %q needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alerts.yml " + r.Alert
			switch {
			case !regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`).MatchString(r.Alert):
				t.Errorf("alerts.yml: alert name %q is not CamelCase", r.Alert)
			case r.Record != "":
				t.Errorf("%s: has record as well", where)
			case seen[r.Alert]:
				t.Errorf("%s: defined twice", where)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" || !balanced(r.Expr) {
				t.Errorf("%s: expr %q is empty or unbalanced", where, r.Expr)
			}
			if dur, err := time.ParseDuration(r.For); err != nil || dur <= 0 {
				t.Errorf("%s: for %q is not a duration", where, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", where)
			}
			for k, v := range r.Annotations {
				if _, err := template.New(k).Funcs(tmplFuncs).Parse(tmplHeader + v); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
			uses[r.Alert] = checkNames(t, where, r.Expr, exported)
			if r.Alert == "MirrordSyncStale" {
				m := regexp.MustCompile(`>\s*([0-9.]+)\s*$`).FindStringSubmatch(strings.TrimSpace(r.Expr))
				if m == nil {
					t.Errorf("%s: expr %q does not end in a threshold", where, r.Expr)
				} else {
					stale, _ = strconv.ParseFloat(m[1], 64)
				}
			}
		}
	}
	required := map[string]string{
		"MirrordSyncStale":      "mirrord_sync_last_success_timestamp_seconds",
		"MirrordUpstreamErrors": "mirrord_upstream_requests_total",
	}
	for alert, metric := range required {
		if !slices.Contains(uses[alert], metric) {
			t.Errorf("alerts.yml: alert %s on %s is missing", alert, metric)
		}
	}
	return stale
}

var (
	adviceGET   = regexp.MustCompile(`\bGET (/api/v1/[a-z/]+)`)
	adviceField = regexp.MustCompile(`\(([a-z_]+)\[\]\.([a-z_]+)\)`) // (sync[].last_error): a field of GET /api/v1/status
	adviceLog   = regexp.MustCompile(`\(component=([a-z]+)\)`)       // a log key
	adviceCurl  = regexp.MustCompile(`\bcurl [^\n]*?http://\S+`)     // a command to run
)

// checkAdvice renders every alert's annotations as Prometheus would for
// the daemon's mirror repo archlinux/core, whose syncs fail, and follows
// what they tell an operator: the API paths answer, the status fields and
// log keys exist, and each curl command succeeds against the running
// daemon and does what it says (no advice to run `mirrord sync`, which
// cannot open the data dir the daemon holds).
func checkAdvice(t *testing.T, d *daemon, rs rules) {
	t.Helper()
	requireTool(t, "curl")
	host := strings.TrimPrefix(d.URL, "http://")
	vars := map[string]any{
		"Labels":         map[string]string{"repo": "archlinux/core", "instance": host, "mirror": "mirror.example:443"},
		"ExternalLabels": map[string]string{}, "ExternalURL": "", "Value": 7300.0,
	}
	// The sync at start has failed (its upstream answers 404) once the
	// status has an error to show.
	var lastAttempt string
	eventually(t, 30*time.Second, "the first sync of archlinux/core failed", func() bool {
		st := syncState(t, d, "archlinux/core")
		lastAttempt, _ = st["last_attempt"].(string)
		return st["running"] == false && st["last_error"] != nil
	})
	for _, g := range rs.Groups {
		for _, r := range g.Rules {
			for k, v := range r.Annotations {
				where := "alerts.yml " + r.Alert + " " + k
				tmpl, err := template.New(k).Funcs(tmplFuncs).Parse(tmplHeader + v)
				if err != nil {
					continue // checkAlerts reports it
				}
				var b strings.Builder
				if err := tmpl.Execute(&b, vars); err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				text := b.String()
				if strings.Contains(text, "mirrord sync ") {
					t.Errorf("%s advises `mirrord sync`, which cannot run beside the daemon: %s", where, text)
				}
				for _, m := range adviceGET.FindAllStringSubmatch(text, -1) {
					if code, _, _ := d.get(m[1]); code != 200 {
						t.Errorf("%s names GET %s, which answers %d", where, m[1], code)
					}
				}
				for _, m := range adviceField.FindAllStringSubmatch(text, -1) {
					if m[1] != "sync" {
						t.Errorf("%s names %s[].%s; this test knows only sync[]", where, m[1], m[2])
					} else if _, ok := syncState(t, d, "archlinux/core")[m[2]]; !ok {
						t.Errorf("%s names sync[].%s, which GET /api/v1/status does not have", where, m[2])
					}
				}
				for _, m := range adviceLog.FindAllStringSubmatch(text, -1) {
					if !strings.Contains(d.Log(), "component="+m[1]) {
						t.Errorf("%s names the log key component=%s, which the daemon's log lacks", where, m[1])
					}
				}
				cmds := adviceCurl.FindAllString(text, -1)
				if r.Alert == "MirrordSyncStale" && k == "description" && len(cmds) == 0 {
					t.Errorf("%s says no command that syncs the repo now: %s", where, text)
				}
				for _, cmd := range cmds {
					sh := exec.Command("sh", "-c", cmd)
					sh.Env = append(os.Environ(), "TOKEN="+d.adminToken())
					if out, err := sh.CombinedOutput(); err != nil {
						t.Errorf("%s: the advice %q fails: %v\n%s", where, cmd, err, out)
						continue
					}
					if strings.Contains(cmd, "/api/v1/sync/") {
						eventually(t, 30*time.Second, where+": a sync after "+cmd, func() bool {
							st := syncState(t, d, "archlinux/core")
							at, _ := st["last_attempt"].(string)
							return st["running"] == false && at != lastAttempt
						})
					}
				}
			}
		}
	}
}

// syncState is repo's entry in the sync list of GET /api/v1/status.
func syncState(t *testing.T, d *daemon, repo string) map[string]any {
	t.Helper()
	code, body, _ := d.get("/api/v1/status")
	var st struct{ Sync []map[string]any }
	if err := json.Unmarshal(body, &st); code != 200 || err != nil {
		t.Fatalf("GET /api/v1/status = %d, %v", code, err)
	}
	for _, s := range st.Sync {
		if s["repo"] == repo {
			return s
		}
	}
	t.Fatalf("GET /api/v1/status has no sync of %s: %s", repo, body)
	return nil
}

// panel is the part of a Grafana panel the test reads.
type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct{ X, Y, W, H int }
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Thresholds struct {
				Steps []struct {
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

func checkDashboard(t *testing.T, exported map[string]bool, staleThreshold float64) {
	t.Helper()
	data, err := os.ReadFile("../contrib/grafana/mirrord.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("mirrord.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion < 30 || len(dash.Panels) == 0 {
		t.Fatalf("mirrord.json: title %q, uid %q, schemaVersion %d, %d panels", dash.Title, dash.UID, dash.SchemaVersion, len(dash.Panels))
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource")
		checkNames(t, "mirrord.json variable "+v.Name, v.Definition, exported)
	}
	if !hasDS {
		t.Error("mirrord.json: no datasource variable: it would bind to one Prometheus by uid")
	}
	ids := map[int]bool{}
	queried := map[string]bool{}
	freshness := false
	for _, p := range dash.Panels {
		where := fmt.Sprintf("mirrord.json panel %d %q", p.ID, p.Title)
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id missing or used twice", where)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("%s: no title or a bad gridPos %+v", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if !slices.Contains([]string{"timeseries", "stat", "gauge", "table", "bargauge"}, p.Type) || len(p.Targets) == 0 {
			t.Errorf("%s: type %q with %d targets", where, p.Type, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || !balanced(tg.Expr) || tg.Expr == "" {
				t.Errorf("%s: target %q: empty, unbalanced or refId reused: %q", where, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
			for _, n := range checkNames(t, where, tg.Expr, exported) {
				queried[strings.TrimSuffix(n, "_bucket")] = true
			}
			if strings.Contains(tg.Expr, "mirrord_sync_last_success_timestamp_seconds") {
				for _, s := range p.FieldConfig.Defaults.Thresholds.Steps {
					freshness = freshness || (s.Value != nil && *s.Value == staleThreshold)
				}
			}
		}
	}
	if !freshness {
		t.Errorf("mirrord.json: no sync freshness panel with the alert's threshold %v s", staleThreshold)
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{
		"mirrord_requests_total", "mirrord_served_bytes_total", "mirrord_fetched_bytes_total",
		"mirrord_upstream_request_duration_seconds", "mirrord_inflight_fetches",
		"mirrord_sync_last_success_timestamp_seconds", "mirrord_publish_queue_length",
	} {
		if !queried[m] {
			t.Errorf("mirrord.json does not show %s", m)
		}
	}
}

// unitFile is a systemd unit's settings, each key with its values in
// order (sections are not told apart: mirrord.service repeats no key
// across them).
func unitFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// snippetLine is the line of a sysusers or tmpfiles snippet whose second
// field is name, split into fields.
func snippetLine(t *testing.T, path, name string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 1 && f[0][0] != '#' && f[1] == name {
			return f
		}
	}
	t.Fatalf("%s has no line for %s", path, name)
	return nil
}

// TestSystemdUnit checks systemd/mirrord.service, its sysusers and
// tmpfiles snippets and the example config against each other: the
// config decides data_dir (the unit sets no flag or variable that would
// override it), and all four name the same state directory, owner and
// mode. systemd-analyze, systemd-sysusers and systemd-tmpfiles read the
// files as shipped.
func TestSystemdUnit(t *testing.T) {
	unit := unitFile(t, "../systemd/mirrord.service")
	one := func(key string) string {
		if len(unit[key]) != 1 {
			t.Fatalf("mirrord.service: %s = %q, want one value", key, unit[key])
		}
		return unit[key][0]
	}
	start := strings.Fields(one("ExecStart"))
	if want := []string{"/usr/bin/mirrord", "serve", "--config", "/etc/mirrord/mirrord.yaml"}; !slices.Equal(start, want) {
		t.Errorf("ExecStart = %q, want %q: any other flag overrides the config", start, want)
	}
	for _, env := range unit["Environment"] {
		if strings.Contains(env, "MIRRORD_") {
			t.Errorf("Environment=%s overrides the config", env)
		}
	}
	user, group, mode := one("User"), one("Group"), one("StateDirectoryMode")
	stateDir := "/var/lib/" + one("StateDirectory")
	if wd := one("WorkingDirectory"); wd != stateDir {
		t.Errorf("WorkingDirectory = %s, want the state directory %s", wd, stateDir)
	}

	src, err := os.ReadFile("../config/mirrord.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var example struct {
		DataDir string `yaml:"data_dir"`
	}
	if err := yaml.Unmarshal(src, &example); err != nil {
		t.Fatal(err)
	}
	if example.DataDir != stateDir {
		t.Errorf("the example config's data_dir is %q, the unit's StateDirectory %s", example.DataDir, stateDir)
	}

	// u NAME ID GECOS HOME
	if u := snippetLine(t, "../systemd/mirrord.sysusers", user); u[0] != "u" || u[len(u)-1] != stateDir || group != user {
		t.Errorf("sysusers %q, unit User=%s Group=%s: want user and group %s with home %s", u, user, group, user, stateDir)
	}
	// d PATH MODE USER GROUP AGE
	if d := snippetLine(t, "../systemd/mirrord.tmpfiles", stateDir); len(d) < 5 || d[0] != "d" || d[2] != mode || d[3] != user || d[4] != group {
		t.Errorf("tmpfiles %q, want d %s %s %s %s as the unit makes it", d, stateDir, mode, user, group)
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		requireTool(t, "systemd-analyze")
		// verify wants the command to exist: the unit with this build's.
		data, _ := os.ReadFile("../systemd/mirrord.service")
		path := filepath.Join(t.TempDir(), "mirrord.service")
		os.WriteFile(path, bytes.Replace(data, []byte("ExecStart=/usr/bin/mirrord "), []byte("ExecStart="+binary+" "), 1), 0o644)
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("sysusers and tmpfiles", func(t *testing.T) {
		requireTool(t, "systemd-sysusers", "systemd-tmpfiles")
		if os.Geteuid() != 0 {
			t.Skip("making a folder owned by another user needs root")
		}
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		snippets, _ := filepath.Abs("../systemd") // with --root, a relative path is taken inside the root
		for _, args := range [][]string{
			{"systemd-sysusers", "--root=" + root, filepath.Join(snippets, "mirrord.sysusers")},
			{"systemd-tmpfiles", "--root=" + root, "--create", filepath.Join(snippets, "mirrord.tmpfiles")},
		} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		var uid string
		for line := range strings.Lines(string(passwd)) {
			if f := strings.Split(strings.TrimSpace(line), ":"); len(f) == 7 && f[0] == user {
				uid = f[2]
				if f[5] != stateDir {
					t.Errorf("passwd: %s's home is %s, want %s", user, f[5], stateDir)
				}
			}
		}
		info, err := os.Stat(filepath.Join(root, stateDir))
		if err != nil || uid == "" {
			t.Fatalf("after sysusers and tmpfiles: %v, uid %q\n%s", err, uid, passwd)
		}
		st := info.Sys().(*syscall.Stat_t)
		if got := fmt.Sprintf("%04o", info.Mode().Perm()); got != mode || fmt.Sprint(st.Uid) != uid {
			t.Errorf("%s is %s owned by %d, want %s owned by %s (%s)", stateDir, got, st.Uid, mode, user, uid)
		}
	})
}
