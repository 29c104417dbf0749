package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeJobs is an API that takes one upload as job "j1", done at once; its
// job answers carry published_at from the published'th request on (never
// if 0), and from the second on, hold a ?wait without it until the client
// leaves, as the API does.
func fakeJobs(t *testing.T, published int) (url string, polls *atomic.Int64) {
	polls = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/repos/archlinux/custom/packages":
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(map[string]string{"job": "j1"})
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/jobs/j1":
			j := map[string]any{"id": "j1", "status": "done", "package": map[string]string{"filename": "x-1-1-any.pkg.tar.zst"}, "published_at": nil}
			if n := polls.Add(1); published > 0 && n >= int64(published) {
				j["published_at"] = time.Now()
			} else if n > 1 && r.URL.Query().Get("wait") != "" {
				<-r.Context().Done() // the client's --timeout
				return
			}
			json.NewEncoder(w).Encode(j)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, polls
}

func runPublish(t *testing.T, url string, extra ...string) (stdout, stderr string, err error) {
	file := filepath.Join(t.TempDir(), "x-1-1-any.pkg.tar.zst")
	os.WriteFile(file, []byte("not really a package"), 0o644)
	root := rootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"publish", "--url", url, "--token", "t", "--wait"}, append(extra, "archlinux/custom", file)...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// --wait returns only once the job says its package is served
// (published_at), not when it is done.
func TestPublishWaitsForPublishedAt(t *testing.T) {
	url, polls := fakeJobs(t, 2)
	stdout, stderr, err := runPublish(t, url)
	if err != nil || !strings.Contains(stdout, "x-1-1-any.pkg.tar.zst: published x-1-1-any.pkg.tar.zst") {
		t.Fatalf("publish --wait: %v\nstdout %s\nstderr %s", err, stdout, stderr)
	}
	if n := polls.Load(); n != 2 {
		t.Errorf("%d polls of the job, want 2 (done, then done and published)", n)
	}
}

// A job done whose db is not served by --timeout fails the command.
func TestPublishWaitTimeout(t *testing.T) {
	url, _ := fakeJobs(t, 0)
	start := time.Now()
	_, stderr, err := runPublish(t, url, "--timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "1 of 1 packages not published") ||
		!strings.Contains(stderr, "job j1: done, not yet in the served database after --timeout 300ms") {
		t.Errorf("publish --wait --timeout 300ms: err %v, stderr %q; want a failure saying the db is not served yet", err, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v, want about the timeout", d)
	}
}
