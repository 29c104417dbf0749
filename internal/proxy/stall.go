package proxy

import (
	"io"
	"net/http"
	"time"
)

// bodyStall bounds how long a request body may go without a byte (see
// limitBodyStall). The server has no overall read timeout, since an upload
// may rightly take long on a slow link; a minute without a byte is no
// client worth waiting for, as for responses (fastpath.WriteStall, the
// write side's rule, which the fast path applies to both serving paths).
const bodyStall = 60 * time.Second

// limitBodyStall gives a request body a read deadline that moves on with
// every read: an upload that trickles is fine, one that stops for
// bodyStall fails (the handler sees a read error). The deadline also
// bounds what net/http reads of an unread body after the handler, which
// would otherwise wait forever for a client that announced a body and
// never sent it. It is cleared at the end of the body, before net/http's
// background read of the connection starts waiting under it.
func limitBodyStall(w http.ResponseWriter, r *http.Request, stall time.Duration) *http.Request {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return r
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(stall)) != nil {
		return r // not a connection that has deadlines (a test recorder)
	}
	r2 := *r
	r2.Body = &stallBody{ReadCloser: r.Body, rc: rc, stall: stall}
	return &r2
}

type stallBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
	done  bool
}

func (b *stallBody) Read(p []byte) (int, error) {
	if !b.done {
		b.rc.SetReadDeadline(time.Now().Add(b.stall))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
