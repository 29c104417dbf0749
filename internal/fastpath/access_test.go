package fastpath

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"testing"

	"github.com/mirrord/mirrord/internal/accesslog"
)

// lockedBuffer is a log's output, read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Each fast-path response gets an access log line with the client's
// address, the path, status, body bytes, result and user agent; a
// request handed to Fallback gets none from the fast path.
func TestAccessLog(t *testing.T) {
	var out lockedBuffer
	log := accesslog.New(&out, "json")
	e := newEnv(t, func(s *Server) { s.AccessLog = log })
	e.mem["a"] = []byte("AAAA")
	big := pattern(1 << 20) // more than a socket takes at once: logged when the last byte went
	e.addFile("big", big)
	c := e.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, get("/mem/a", "User-Agent: pacman/6.0.2 (Linux x86_64) libalpm/13.0.2\r\n")+get("/file/big")+get("/nothing"))
	for range 3 {
		readResponse(t, br)
	}
	<-e.released
	e.shutdown()
	log.Flush()

	type line struct {
		Remote, Method, Path, Result, UserAgent string
		Status                                  int
		Bytes                                   int64
	}
	var lines []line
	dec := json.NewDecoder(&out.buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line{m["remote"].(string), m["method"].(string), m["path"].(string), m["result"].(string),
			m["user_agent"].(string), int(m["status"].(float64)), int64(m["bytes"].(float64))})
	}
	local := c.LocalAddr().String()
	want := []line{
		{local, "GET", "/mem/a", "hit", "pacman/6.0.2 (Linux x86_64) libalpm/13.0.2", 200, 4},
		{local, "GET", "/file/big", "hit", "", 200, int64(len(big))},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, lines[i], want[i])
		}
	}
}
