package web

import (
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/lockfree"
	"github.com/mirrord/mirrord/internal/store"
)

// fixedTraffic is a TrafficSource that always says the same.
type fixedTraffic Traffic

func (f fixedTraffic) Traffic() Traffic { return Traffic(f) }

// The home page's traffic card shows what the TrafficSource says, and
// nothing else: no registry is read.
func TestHomeShowsTraffic(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := catalog.New(&config.Config{}, st, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		src  TrafficSource
		want []string
	}{
		{"no source", nil, []string{`<p class="big">–</p>`, "<p>0 hits of 0 requests</p>", "0 B fetched from upstream", "0 clients reading them"}},
		{"no request yet", fixedTraffic{}, []string{`<p class="big">–</p>`, "<p>0 hits of 0 requests</p>"}},
		{"counts", fixedTraffic{Requests: 7, Hits: 5, Coalesced: 1, Served: 3 << 20, Fetched: 1536, InflightReaders: 2}, []string{
			`<p class="big">71.4%</p>`, "<p>5 hits of 7 requests</p>", `<p class="big">3.0 MiB</p>`,
			"<p>1.5 KiB fetched from upstream</p>", "<p>fetches, 2 clients reading them</p>",
		}},
		{"one", fixedTraffic{Requests: 1, Hits: 1, InflightReaders: 1}, []string{`<p class="big">100.0%</p>`, "<p>1 hit of 1 request</p>", "1 clients reading them"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ui, err := New(cat, api.New(cat, st, api.Options{}), st, Options{Traffic: c.src})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			ui.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != 200 {
				t.Fatalf("GET / = %d", rec.Code)
			}
			for _, w := range c.want {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("GET / lacks %q", w)
				}
			}
		})
	}
}

// The typed counts are the registry's to the byte: the same numbers the
// UI showed when it summed /metrics by metric name, which this test keeps
// as its oracle (and only here).
func TestTrafficIsTheMetrics(t *testing.T) {
	e := newEnv(t)
	// Quiesce, so that both reads see the same counts: Close returns once
	// every request has been counted, and a flight leaves the registry
	// only after its fill counted its bytes, before Done.
	e.srv.Close()
	var fills []<-chan struct{}
	e.traffic.fetcher.Flights().Range(func(_ string, f *lockfree.Flight) bool {
		fills = append(fills, f.Done())
		return true
	})
	for _, done := range fills {
		<-done
	}
	got := e.traffic.Traffic()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var want Traffic
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch v := int64(m.GetCounter().GetValue()); mf.GetName() {
			case "mirrord_requests_total":
				switch labelValue(m, "result") {
				case "not_found":
					continue
				case "hit":
					want.Hits += v
				case "coalesced":
					want.Coalesced += v
				}
				want.Requests += v
			case "mirrord_served_bytes_total":
				want.Served += v
			case "mirrord_fetched_bytes_total":
				want.Fetched += v
			case "mirrord_inflight_readers":
				want.InflightReaders += int64(m.GetGauge().GetValue())
			}
		}
	}
	if got != want {
		t.Errorf("Traffic() = %+v, want the registry's %+v", got, want)
	}
	// newEnv's client asked for extra.db and twice for python; a zero
	// oracle would prove nothing.
	if got.Requests != 3 || got.Served == 0 || got.Fetched == 0 {
		t.Errorf("Traffic() = %+v, want 3 requests, bytes served and fetched", got)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
