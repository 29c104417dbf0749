package fastpath

import "time"

// NotModified reports whether the answer to r for a file last modified at
// mod, sent with no ETag (as mirrord sends every file), is 304 Not
// Modified, exactly as http.ServeContent decides it (RFC 9110 13.2.2):
// If-None-Match, when present, decides alone, and with no ETag to match
// only "*" matches; else If-Modified-Since at or after mod, to the second.
// ok is false when the fast path cannot tell: an If-Modified-Since date
// not in the IMF-fixdate form (net/http also reads the obsolete RFC 850
// and asctime forms); the request is then net/http's.
func (r *Request) NotModified(mod time.Time) (notModified, ok bool) {
	if len(r.IfNoneMatch) > 0 {
		return noneMatchAny(r.IfNoneMatch), true
	}
	if len(r.IfModifiedSince) == 0 || mod.IsZero() || mod.Equal(time.Unix(0, 0)) {
		return false, true // net/http ignores a condition on a zero time
	}
	if len(r.IfModifiedSince) == len(http1123) {
		// A cache sends back the Last-Modified it was given: the same
		// bytes mean the same second, which is no later than mod's.
		var buf [len(http1123)]byte
		if string(AppendDate(buf[:0], mod)) == string(r.IfModifiedSince) {
			return true, true
		}
	}
	t, ok := parseIMFFixdate(r.IfModifiedSince)
	if !ok {
		return false, false
	}
	return mod.Truncate(time.Second).Compare(t) <= 0, true
}

// noneMatchAny reports whether the If-None-Match list v holds "*" before
// anything net/http's scanner stops at (a malformed entity tag), which
// is the only way it matches a response without an ETag.
func noneMatchAny(v []byte) bool {
	for {
		v = trimSpace(v)
		switch {
		case len(v) == 0:
			return false
		case v[0] == ',':
			v = v[1:]
			continue
		case v[0] == '*':
			return true
		}
		n := etagLen(v)
		if n == 0 {
			return false
		}
		v = v[n:]
	}
}

// etagLen is the length of the entity tag ("x" or W/"x") v starts with,
// 0 if none (the grammar of net/http's scanETag).
func etagLen(v []byte) int {
	start := 0
	if len(v) >= 2 && v[0] == 'W' && v[1] == '/' {
		start = 2
	}
	if len(v[start:]) < 2 || v[start] != '"' {
		return 0
	}
	for i := start + 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == 0x21 || c >= 0x23 && c <= 0x7e || c >= 0x80:
		case c == '"':
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// trimSpace trims what textproto.TrimString does: ASCII space, tab, CR, LF.
func trimSpace(v []byte) []byte {
	for len(v) > 0 && isSpace(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isSpace(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	return v
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var (
	weekdays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	months   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseIMFFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT" (http.TimeFormat)
// without allocating: a strict subset of what http.ParseTime accepts
// (names in this case only, no fraction of a second), with the same
// result (FuzzParseIMFFixdate).
func parseIMFFixdate(b []byte) (time.Time, bool) {
	if len(b) != len(http1123) || b[3] != ',' || b[4] != ' ' || b[7] != ' ' || b[11] != ' ' ||
		b[16] != ' ' || b[19] != ':' || b[22] != ':' || string(b[25:]) != " GMT" {
		return time.Time{}, false
	}
	known := false
	for _, d := range weekdays {
		if string(b[:3]) == d {
			known = true
		}
	}
	month := 0
	for i, m := range months {
		if string(b[8:11]) == m {
			month = i + 1
		}
	}
	day, ok1 := digits(b[5:7])
	year, ok2 := digits(b[12:16])
	hour, ok3 := digits(b[17:19])
	minute, ok4 := digits(b[20:22])
	sec, ok5 := digits(b[23:25])
	if !known || month == 0 || !ok1 || !ok2 || !ok3 || !ok4 || !ok5 ||
		day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// AppendDate appends t in the IMF-fixdate form of HTTP dates
// (http.TimeFormat), in UTC, as t.UTC().AppendFormat(dst, http.TimeFormat)
// does for the years 0-9999, at a fraction of the cost: a hit formats
// one for Last-Modified.
func AppendDate(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, http1123)
	}
	dst = append(dst, weekdays[t.Weekday()]...)
	dst = append(dst, ',', ' ', byte('0'+day/10), byte('0'+day%10), ' ')
	dst = append(dst, months[month-1]...)
	dst = append(dst, ' ', byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), ' ',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), ' ', 'G', 'M', 'T')
	return dst
}
