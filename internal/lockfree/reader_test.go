package lockfree

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// A reader whose context ends while it waits returns ctx.Err() at once, and
// the flight goes on for everyone else.
func TestReaderContextCancelledWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := pattern(8192)
		var g Group
		gf := newGatedFill(t, data)
		f, _ := g.Do(t.Context(), "k", gf.fill)
		close(gf.begin)
		<-gf.half

		tests := []struct {
			name string
			call func(r *Reader) error
		}{
			{"Read", func(r *Reader) error {
				if _, err := r.Seek(int64(len(data)/2), io.SeekStart); err != nil {
					return err
				}
				_, err := r.Read(make([]byte, 10))
				return err
			}},
			{"ReadAt", func(r *Reader) error {
				_, err := r.ReadAt(make([]byte, 10), int64(len(data)-10))
				return err
			}},
		}
		for _, tt := range tests {
			ctx, cancel := context.WithCancel(t.Context())
			r := f.NewReader(ctx)
			errc := make(chan error, 1)
			go func() { errc <- tt.call(r) }()
			synctest.Wait() // the reader is blocked waiting for bytes
			select {
			case err := <-errc:
				t.Fatalf("%s returned %v before the bytes were written", tt.name, err)
			default:
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("%s after cancel = %v, want context.Canceled", tt.name, err)
			}
			r.Close()
		}
		if f.isDone() {
			t.Fatalf("flight ended when its readers left")
		}
		r := f.NewReader(t.Context())
		defer r.Close()
		gf.open()
		got, err := readAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("read %d bytes, %v, want %d, nil", len(got), err, len(data))
		}
	})
}

func TestReadAtWaitsForUnwrittenBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := pattern(10_000) // the gated fill writes 5000, then the rest
		var g Group
		gf := newGatedFill(t, data)
		f, _ := g.Do(t.Context(), "k", gf.fill)
		r := f.NewReader(t.Context())
		defer r.Close()
		close(gf.begin)
		<-gf.half

		// Written bytes come at once.
		p := make([]byte, 100)
		if n, err := r.ReadAt(p, 4900); n != 100 || err != nil || !bytes.Equal(p, data[4900:5000]) {
			t.Errorf("ReadAt(100, 4900) = %d, %v, want 100 written bytes, nil", n, err)
		}
		// A range straddling the written end waits for all of it.
		type result struct {
			n   int
			err error
		}
		resc := make(chan result, 1)
		q := make([]byte, 200)
		go func() {
			n, err := r.ReadAt(q, 4900)
			resc <- result{n, err}
		}()
		synctest.Wait()
		select {
		case res := <-resc:
			t.Fatalf("ReadAt(200, 4900) = %d, %v before byte 5000 was written", res.n, res.err)
		default:
		}
		close(gf.more)
		res := <-resc
		if res.n != 200 || res.err != nil || !bytes.Equal(q, data[4900:5100]) {
			t.Errorf("ReadAt(200, 4900) = %d, %v, want 200 bytes, nil", res.n, res.err)
		}
		// Past the end, it waits for the fill's result: io.EOF on success.
		go func() {
			n, err := r.ReadAt(q, 9900)
			resc <- result{n, err}
		}()
		synctest.Wait()
		select {
		case res := <-resc:
			t.Fatalf("ReadAt(200, 9900) = %d, %v before the fill returned", res.n, res.err)
		default:
		}
		close(gf.finish)
		res = <-resc
		if res.n != 100 || res.err != io.EOF || !bytes.Equal(q[:100], data[9900:]) {
			t.Errorf("ReadAt(200, 9900) = %d, %v, want 100, io.EOF", res.n, res.err)
		}
	})
}

func TestReadAtAndSeek(t *testing.T) {
	data := pattern(1000)
	tests := []struct {
		name    string
		size    int64 // Meta.Size
		offset  int64
		whence  int
		want    int64
		wantErr error // errors.Is target; any error if errAny
	}{
		{"start", 1000, 10, io.SeekStart, 10, nil},
		{"current", 1000, 5, io.SeekCurrent, 105, nil}, // from 100
		{"end known", 1000, -10, io.SeekEnd, 990, nil},
		{"end unknown", -1, 0, io.SeekEnd, 0, ErrSizeUnknown},
		{"past the end", 1000, 10, io.SeekEnd, 1010, nil},
		{"negative", 1000, -1, io.SeekStart, 0, errAny},
		{"bad whence", 1000, 0, 7, 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Group
			gf := newGatedFill(t, data)
			gf.meta.Size = tt.size
			f, _ := g.Do(t.Context(), "k", gf.fill)
			defer func() { gf.open(); <-f.Done() }()
			close(gf.begin)
			<-gf.half // in flight, half written
			r := f.NewReader(t.Context())
			defer r.Close()
			if _, err := r.Seek(100, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := r.Seek(tt.offset, tt.whence)
			switch {
			case tt.wantErr == errAny && err == nil,
				tt.wantErr != errAny && !errors.Is(err, tt.wantErr),
				err == nil && got != tt.want:
				t.Errorf("Seek(%d, %d) = %d, %v, want %d, %v", tt.offset, tt.whence, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestSeekEndUnknownSizeAfterCompletion(t *testing.T) {
	var g Group
	gf := newGatedFill(t, pattern(1000))
	gf.meta.Size = -1
	f, _ := g.Do(t.Context(), "k", gf.fill)
	r := f.NewReader(t.Context())
	defer r.Close()
	gf.open()
	<-f.Done()
	if got, err := r.Seek(0, io.SeekEnd); got != 1000 || err != nil {
		t.Errorf("Seek(0, SeekEnd) after completion = %d, %v, want 1000, nil", got, err)
	}
	if n, err := r.ReadAt(make([]byte, 10), -1); n != 0 || err == nil {
		t.Errorf("ReadAt(10, -1) = %d, %v, want 0 and an error", n, err)
	}
	if n, err := r.ReadAt(nil, 5000); n != 0 || err != nil {
		t.Errorf("ReadAt(nil, 5000) = %d, %v, want 0, nil", n, err)
	}
}

// http.ServeContent serves Range and HEAD on a file still in flight, from
// the bytes already written and, for later ranges, as they arrive.
func TestServeContentInFlight(t *testing.T) {
	data := pattern(100_000) // the gated fill holds after 50 000 bytes
	var g Group
	gf := newGatedFill(t, data)
	gf.meta.ModTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const key = "extra/os/x86_64/zstd-1.5.7-1-x86_64.pkg.tar.zst"
	joined := make(chan struct{}, 16) // a request has its reader
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f := g.Lookup(key) // the test wants joins only, never a second fill
		if f == nil {
			http.Error(w, "not in flight", http.StatusNotFound)
			return
		}
		r := f.NewReader(req.Context())
		defer r.Close()
		joined <- struct{}{}
		meta, err := r.Wait()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", meta.ContentType) // no sniffing read
		http.ServeContent(w, req, key, meta.ModTime, r)
	}))
	defer srv.Close()
	f, _ := g.Do(t.Context(), key, gf.fill) // a first client's miss
	close(gf.begin)
	<-gf.half

	get := func(method, rng string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/"+key, nil)
		if err != nil {
			return nil, nil, err
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	tests := []struct {
		name, method, rng string
		status            int
		body              []byte
		length            int
	}{
		{"range of written bytes", http.MethodGet, "bytes=100-199", http.StatusPartialContent, data[100:200], 100},
		{"suffix range", http.MethodHead, "bytes=-10", http.StatusPartialContent, nil, 10},
		{"HEAD", http.MethodHead, "", http.StatusOK, nil, len(data)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := get(tt.method, tt.rng)
			if err != nil {
				t.Fatal(err)
			}
			<-joined
			if resp.StatusCode != tt.status || !bytes.Equal(body, tt.body) {
				t.Errorf("%s %s = %d with %d bytes, want %d with %d", tt.method, tt.rng, resp.StatusCode, len(body), tt.status, len(tt.body))
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(tt.length) {
				t.Errorf("%s %s: Content-Length = %s, want %d", tt.method, tt.rng, got, tt.length)
			}
			if got := resp.Header.Get("Last-Modified"); got != "Thu, 02 Jan 2025 03:04:05 GMT" {
				t.Errorf("%s %s: Last-Modified = %q", tt.method, tt.rng, got)
			}
		})
	}
	if f.isDone() {
		t.Fatalf("flight ended before the gate opened")
	}

	// A range past the written end is served once the bytes arrive.
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, body, err := get(http.MethodGet, "bytes=90000-90099")
		resc <- result{resp, body, err}
	}()
	<-joined // the request waits on the flight
	gf.open()
	res := <-resc
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.resp.StatusCode != http.StatusPartialContent || !bytes.Equal(res.body, data[90000:90100]) {
		t.Errorf("GET bytes=90000-90099 = %d with %d bytes, want 206 with data[90000:90100]", res.resp.StatusCode, len(res.body))
	}
	<-f.Done()
	if n := gf.fills.Load(); n != 1 {
		t.Errorf("fills = %d, want 1 for %d requests", n, len(tests)+1)
	}
}

func TestReaderMethodsAfterClose(t *testing.T) {
	var g Group
	gf := newGatedFill(t, pattern(10)).open()
	f, _ := g.Do(t.Context(), "k", gf.fill)
	r := f.NewReader(t.Context())
	r.Close()
	if _, err := r.Wait(); !errors.Is(err, errClosed) {
		t.Errorf("Wait() = %v, want errClosed", err)
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); !errors.Is(err, errClosed) {
		t.Errorf("ReadAt() = %v, want errClosed", err)
	}
	<-f.Done()
}
