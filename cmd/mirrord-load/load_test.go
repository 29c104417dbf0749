package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadRun(t *testing.T) {
	body := strings.Repeat("x", 100<<10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(body))
		case "/short":
			// Declares more than it sends: the client must see a cut body.
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("abc"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()

	tests := []struct {
		name                   string
		urls                   []string
		clients, requests      int
		wantRequests, wantErrs int64
		wantBytes              int64
	}{
		{"one url", []string{ts.URL + "/ok"}, 4, 20, 20, 0, 20 * int64(len(body))},
		{"not found counts as error", []string{ts.URL + "/ok", ts.URL + "/missing"}, 2, 10, 5, 5, 5 * int64(len(body))},
		{"short body counts as error", []string{ts.URL + "/short"}, 1, 3, 0, 3, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := Load{URLs: tc.urls, Clients: tc.clients, Requests: tc.requests}
			rep, err := l.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests != tc.wantRequests || rep.Errors != tc.wantErrs || rep.Bytes != tc.wantBytes {
				t.Errorf("Run(%q) = %d requests, %d errors, %d bytes; want %d, %d, %d",
					tc.urls, rep.Requests, rep.Errors, rep.Bytes, tc.wantRequests, tc.wantErrs, tc.wantBytes)
			}
			if tc.wantRequests > 0 && (rep.TTFB.Min <= 0 || rep.Completion.Max < rep.Completion.Min) {
				t.Errorf("Run(%q) summaries = %+v / %+v, want positive and ordered", tc.urls, rep.TTFB, rep.Completion)
			}
		})
	}
}

func TestLoadDurationCutsOff(t *testing.T) {
	stop := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select { // never finishes on its own
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer ts.Close()
	defer close(stop)
	l := Load{URLs: []string{ts.URL}, Clients: 3, Duration: 200 * time.Millisecond}
	rep, err := l.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Incomplete != 3 || rep.Errors != 0 || rep.Bytes != 3 {
		t.Errorf("Run = %d incomplete, %d errors, %d bytes; want 3, 0, 3", rep.Incomplete, rep.Errors, rep.Bytes)
	}
}

func TestUpstreamPacesAndCounts(t *testing.T) {
	dir := t.TempDir()
	const size = 200 << 10
	if err := os.WriteFile(filepath.Join(dir, "f.pkg.tar.zst"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	const rate = 1 << 20 // 200 KiB take about 195 ms
	ts := httptest.NewServer(newUpstream(dir, rate))
	defer ts.Close()

	l := Load{URLs: []string{ts.URL + "/f.pkg.tar.zst"}, Clients: 2, Requests: 2}
	rep, err := l.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 2 {
		t.Fatalf("Run = %d requests (%s), want 2", rep.Requests, rep.FirstError)
	}
	st, err := readUpstreamStats(ts.URL + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 2 || st.Bytes != 2*size {
		t.Errorf("stats = %d requests, %d bytes; want 2, %d", st.Requests, st.Bytes, 2*size)
	}
	// The pace is a lower bound on time; only the lower side is stable
	// on a loaded machine.
	if got, want := st.LastByte.Sub(st.FirstByte), 150*time.Millisecond; got < want {
		t.Errorf("transfer took %v, want at least %v at %d B/s", got, want, rate)
	}
	rep.relate(st)
	if rep.Upstream.Requests != 2 || rep.Upstream.CompletionMaxRatio <= 0 {
		t.Errorf("relate = %+v, want 2 requests and a ratio", rep.Upstream)
	}

	resp, err := http.Post(ts.URL+"/_reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st, _ := readUpstreamStats(ts.URL + "/_count"); st.Requests != 0 || st.Bytes != 0 || !st.FirstByte.IsZero() {
		t.Errorf("stats after reset = %+v, want zero", st)
	}
}

// TestEveryURLOnce: as many requests as URLs fetch each URL once, however
// many clients share them (as bench-proxy.sh's cache fill needs).
func TestEveryURLOnce(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path]++
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	defer ts.Close()
	var urls []string
	for i := range 23 {
		urls = append(urls, fmt.Sprintf("%s/f%d", ts.URL, i))
	}
	l := Load{URLs: urls, Clients: 4, Requests: len(urls)}
	rep, err := l.Run(t.Context())
	if err != nil || rep.Errors != 0 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range urls {
		if n := got[fmt.Sprintf("/f%d", i)]; n != 1 {
			t.Errorf("/f%d fetched %d times, want 1", i, n)
		}
	}
}
