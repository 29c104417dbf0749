package accesslog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// FlushEvery is how long a line may wait in the buffer.
const FlushEvery = 200 * time.Millisecond

// flushAt is the buffer size that is written at once.
const flushAt = 64 << 10

// Entry is one request, as logged.
type Entry struct {
	Remote    string // the client's address, host:port
	Method    string
	Path      string // the request target as sent
	Status    int
	Bytes     int64 // body bytes sent
	Duration  time.Duration
	Result    string // what the tree made of it (mirrord_requests_total's result), or empty
	UserAgent []byte
}

// Logger writes entries to w, as lines of its format. Its methods may be
// called from any goroutine; a nil *Logger logs nothing. Lines collect
// in a buffer; a full one, or one FlushEvery old, goes to a goroutine of
// the Logger's that writes it, so that the caller never waits for w.
type Logger struct {
	w    io.Writer
	json bool

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer // the pending flush, nil when the buffer is empty
	clock stamps

	dropped int64 // lines dropped since the last buffer went: see queueLocked

	queue   chan []byte    // full buffers, for the writer
	free    chan []byte    // written ones, for reuse
	pending sync.WaitGroup // buffers queued and not yet written
}

// New returns a Logger writing to w in format "text" or "json", the
// format of mirrord's other log lines (slog's handlers).
func New(w io.Writer, format string) *Logger {
	l := &Logger{w: w, json: format == "json", buf: make([]byte, 0, flushAt+4096),
		queue: make(chan []byte, 4), free: make(chan []byte, 4)}
	go l.write()
	return l
}

// Log writes e's line, stamped now.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if l.json {
		l.buf = appendJSON(l.buf, l.clock.json(now), e)
	} else {
		l.buf = appendText(l.buf, l.clock.text(now), e)
	}
	if len(l.buf) >= flushAt {
		l.queueLocked()
	} else if l.timer == nil {
		l.timer = time.AfterFunc(FlushEvery, l.queueBuffered)
	}
	l.mu.Unlock()
}

// Flush writes the lines logged so far, and returns once they are (or
// were dropped: see queueLocked).
func (l *Logger) Flush() {
	if l == nil {
		return
	}
	l.queueBuffered()
	l.pending.Wait()
}

func (l *Logger) queueBuffered() {
	l.mu.Lock()
	l.queueLocked()
	l.mu.Unlock()
}

// queueLocked hands the buffer to the writer and takes an empty one.
func (l *Logger) queueLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.buf) == 0 {
		return
	}
	notice := l.dropped > 0
	if notice {
		l.buf = l.appendDropped(l.buf, time.Now())
	}
	l.pending.Add(1)
	select {
	case l.queue <- l.buf:
		l.dropped = 0
	default:
		// Four buffers wait for w already (journald stalled, a full
		// disk): drop this one rather than stop the fast path's loops,
		// which log under l.mu; the next buffer that goes says so.
		l.pending.Done()
		l.dropped += int64(bytes.Count(l.buf, []byte{'\n'}))
		if notice {
			l.dropped-- // the notice itself
		}
		l.buf = l.buf[:0]
		return
	}
	select {
	case l.buf = <-l.free:
	default:
		l.buf = make([]byte, 0, flushAt+4096)
	}
}

// appendDropped appends the line that says how many lines were dropped.
func (l *Logger) appendDropped(b []byte, now time.Time) []byte {
	const msg = "access log lines dropped: the log's output did not keep up"
	if l.json {
		return fmt.Appendf(b, `{"time":"%s","level":"WARN","msg":%q,"component":"access","dropped":%d}`+"\n", l.clock.json(now), msg, l.dropped)
	}
	return fmt.Appendf(b, "time=%s level=WARN msg=%q component=access dropped=%d\n", l.clock.text(now), msg, l.dropped)
}

// write writes the buffers queued, for the Logger's life.
func (l *Logger) write() {
	for b := range l.queue {
		l.w.Write(b) // a log that cannot be written has nowhere to say so
		select {
		case l.free <- b[:0]:
		default:
		}
		l.pending.Done()
	}
}

// stamps formats a line's time as slog does, the date and the zone once
// a second.
type stamps struct {
	sec  int64
	date []byte // "2006-01-02T15:04:05"
	zone []byte // "Z07:00"
	out  []byte
}

func (c *stamps) set(now time.Time) {
	if sec := now.Unix(); sec != c.sec || c.date == nil {
		c.sec = sec
		c.date = now.AppendFormat(c.date[:0], "2006-01-02T15:04:05")
		c.zone = now.AppendFormat(c.zone[:0], "Z07:00")
	}
}

// text is now as slog's TextHandler writes it: "2006-01-02T15:04:05.000Z07:00".
func (c *stamps) text(now time.Time) []byte {
	c.set(now)
	ms := now.Nanosecond() / 1e6
	b := append(c.out[:0], c.date...)
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	c.out = append(b, c.zone...)
	return c.out
}

// json is now as slog's JSONHandler writes it: time.RFC3339Nano.
func (c *stamps) json(now time.Time) []byte {
	c.set(now)
	b := append(c.out[:0], c.date...)
	if ns := now.Nanosecond(); ns != 0 {
		var digits [10]byte
		digits[0] = '.'
		for i := 9; i > 0; i-- {
			digits[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for digits[n-1] == '0' {
			n--
		}
		b = append(b, digits[:n]...)
	}
	c.out = append(b, c.zone...)
	return c.out
}

// appendText appends e as slog's TextHandler writes a record.
func appendText(b, stamp []byte, e *Entry) []byte {
	b = append(b, "time="...)
	b = append(b, stamp...)
	b = append(b, " level=INFO msg=request component=access remote="...)
	b = appendTextValue(b, e.Remote)
	b = append(b, " method="...)
	b = appendTextValue(b, e.Method)
	b = append(b, " path="...)
	b = appendTextValue(b, e.Path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, " duration="...)
	b = append(b, e.Duration.String()...)
	if e.Result != "" {
		b = append(b, " result="...)
		b = append(b, e.Result...)
	}
	b = append(b, " user_agent="...)
	b = appendTextValue(b, e.UserAgent)
	return append(b, '\n')
}

// appendTextValue appends s bare, or quoted where slog's TextHandler
// quotes (its needsQuoting): empty, or with a space, '=', '"', a control
// byte, or a rune that is not valid, printable and no space.
func appendTextValue[S string | []byte](b []byte, s S) []byte {
	quote := len(s) == 0
	for i := 0; i < len(s) && !quote; {
		if c := s[i]; c < utf8.RuneSelf {
			quote = c == ' ' || c == '=' || c == '"' || c < ' '
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		quote = r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r)
		i += size
	}
	if !quote {
		return append(b, s...)
	}
	return appendQuoted(b, s)
}

// appendQuoted is strconv.AppendQuote, without its rune by rune walk for
// the common case, printable ASCII (a user agent with spaces).
func appendQuoted[S string | []byte](b []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return strconv.AppendQuote(b, string(s))
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else {
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendJSON appends e as slog's JSONHandler writes a record.
func appendJSON(b, stamp []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = append(b, stamp...)
	b = append(b, `","level":"INFO","msg":"request","component":"access","remote":`...)
	b = appendJSONString(b, e.Remote)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(e.Duration), 10) // nanoseconds, as slog writes a Duration
	if e.Result != "" {
		b = append(b, `,"result":"`...)
		b = append(b, e.Result...)
		b = append(b, '"')
	}
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, e.UserAgent)
	return append(b, "}\n"...)
}

const hex = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as slog's
// JSONHandler escapes it: invalid UTF-8 becomes U+FFFD, and U+2028 and
// U+2029 are escaped.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < ' ':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

type resultKey struct{}

// SetResult records what the tree made of the request whose context ctx
// is, for its line (see Handler).
func SetResult(ctx context.Context, result string) {
	if e, ok := ctx.Value(resultKey{}).(*Entry); ok {
		e.Result = result
	}
}

// Handler logs each request h serves to l; nil l logs nothing.
func Handler(l *Logger, h http.Handler) http.Handler {
	if l == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		e := &Entry{Remote: r.RemoteAddr, Method: r.Method, Path: r.RequestURI, UserAgent: []byte(r.UserAgent())}
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), resultKey{}, e)))
		e.Status, e.Bytes, e.Duration = cw.status, cw.bytes, time.Since(start)
		if e.Status == 0 {
			e.Status = http.StatusOK // net/http's, for a handler that wrote nothing
		}
		l.Log(e)
	})
}

// countingWriter notes a response's status and body bytes.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile(2) for file bodies.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach net/http's writer (Flush,
// Hijack, deadlines).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
