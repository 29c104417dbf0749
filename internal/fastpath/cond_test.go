package fastpath

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestNotModified(t *testing.T) {
	mod := time.Date(2026, 3, 4, 5, 6, 7, 800, time.UTC) // a fraction of a second, as on disk
	at := mod.Format(http.TimeFormat)
	tests := []struct {
		name     string
		ims, inm string
		want     bool // 304
		wantOK   bool
	}{
		{"none", "", "", false, true},
		{"same second", at, "", true, true},
		{"later", mod.Add(time.Hour).Format(http.TimeFormat), "", true, true},
		{"earlier", mod.Add(-time.Second).Format(http.TimeFormat), "", false, true},
		{"rfc 850", "Wednesday, 04-Mar-26 05:06:07 GMT", "", false, false},
		{"asctime", "Wed Mar  4 05:06:07 2026", "", false, false},
		{"lower-case month", "Wed, 04 mar 2026 05:06:07 GMT", "", false, false},
		{"garbage", "yesterday", "", false, false},
		{"day out of range", "Wed, 30 Feb 2026 05:06:07 GMT", "", false, false},
		{"star", "", "*", true, true},
		{"star after tags", "", `"a", W/"b" ,*`, true, true},
		{"tags", at, `"a"`, false, true}, // If-None-Match decides alone: no ETag matches
		{"star after a bad tag", "", `a, *`, false, true},
		{"empty list", at, " , ", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{IfModifiedSince: []byte(tt.ims), IfNoneMatch: []byte(tt.inm)}
			got, ok := r.NotModified(mod)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("NotModified(ims %q, inm %q) = %v, %v; want %v, %v", tt.ims, tt.inm, got, ok, tt.want, tt.wantOK)
			}
			if ok && got != serveContent304(tt.ims, tt.inm, mod) {
				t.Errorf("NotModified(ims %q, inm %q) = %v, http.ServeContent says otherwise", tt.ims, tt.inm, got)
			}
		})
	}
}

func TestNotModifiedAllocs(t *testing.T) {
	r := &Request{IfModifiedSince: []byte("Mon, 02 Jan 2006 15:04:05 GMT")}
	mod := time.Now()
	if n := testing.AllocsPerRun(100, func() { r.NotModified(mod) }); n != 0 {
		t.Errorf("NotModified allocates %v times, want 0", n)
	}
}

// serveContent304 reports whether http.ServeContent answers a GET with
// these conditions, for a file of mod with no ETag, with 304.
func serveContent304(ims, inm string, mod time.Time) bool {
	r := httptest.NewRequest("GET", "/f", nil)
	if ims != "" {
		r.Header.Set("If-Modified-Since", ims)
	}
	if inm != "" {
		r.Header.Set("If-None-Match", inm)
	}
	w := httptest.NewRecorder()
	http.ServeContent(w, r, "", mod, bytes.NewReader([]byte("body")))
	return w.Code == http.StatusNotModified
}

// FuzzNotModified checks NotModified against http.ServeContent, and the
// date parser against http.ParseTime: wherever the fast path decides, it
// decides as net/http does.
func FuzzNotModified(f *testing.F) {
	f.Add("Mon, 02 Jan 2006 15:04:05 GMT", "", int64(1136214245))
	f.Add("Mon, 29 Feb 2000 23:59:59 GMT", "", int64(951868799))
	f.Add("Sun, 31 Dec 1999 00:00:00 GMT", `"a"`, int64(0))
	f.Add("", `W/"x", *`, int64(5))
	f.Add("", `"a" "b"`, int64(5))
	f.Fuzz(func(t *testing.T, ims, inm string, sec int64) {
		if !validValue([]byte(ims)) || !validValue([]byte(inm)) {
			return // parseHead lets no such value through
		}
		if tm, ok := parseIMFFixdate([]byte(ims)); ok {
			want, err := http.ParseTime(ims)
			if err != nil || !want.Equal(tm) {
				t.Fatalf("parseIMFFixdate(%q) = %v, http.ParseTime %v, %v", ims, tm, want, err)
			}
		}
		mod := time.Unix(sec%(1<<36), 0)
		r := &Request{IfModifiedSince: trimSpace([]byte(ims)), IfNoneMatch: trimSpace([]byte(inm))}
		got, ok := r.NotModified(mod)
		if ok && got != serveContent304(string(r.IfModifiedSince), string(r.IfNoneMatch), mod) {
			t.Fatalf("NotModified(ims %q, inm %q, %v) = %v, http.ServeContent says otherwise", ims, inm, mod, got)
		}
	})
}

func FuzzAppendDate(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(1136214245), int64(999999999))
	f.Add(int64(-62135596800), int64(0)) // year 1
	f.Add(int64(253402300799), int64(0)) // 9999-12-31
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tm := time.Unix(sec, nsec)
		want := tm.UTC().Format(http.TimeFormat)
		if got := string(AppendDate(nil, tm)); got != want {
			t.Fatalf("AppendDate(%v) = %q, want %q", tm, got, want)
		}
	})
}
