package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	staleThreshold := checkAlerts(t, exported)
	checkDashboard(t, exported, staleThreshold)
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

// checkAlerts validates the alert rules and returns the stale-sync
// threshold in seconds.
func checkAlerts(t *testing.T, exported map[string]bool) float64 {
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
	// Prometheus runs annotations as Go templates with these defined.
	tmplFuncs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "printf", "title", "toUpper", "toLower"} {
		tmplFuncs[f] = func(v ...any) string { return "" }
	}
	const tmplHeader = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
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
