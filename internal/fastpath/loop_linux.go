//go:build linux

package fastpath

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mirrord/mirrord/internal/accesslog"
)

// scanEvery is how often a loop looks for connections past their
// deadline: the timeouts are that much coarse.
const scanEvery = 100 * time.Millisecond

// yieldAfter is how long a loop answers without waiting before it lets
// the kernel run another thread on its CPU (sched_yield(2)), and then
// goes on. A loop with work never parks, so under the kernel it looks
// like a thread that computes: whatever shares its CPU, the clients of
// a benchmark on the same machine or any other busy process, is woken
// but waits for a tick (4 ms at 250 Hz) while the loop runs, and a loop
// the kernel has set aside waits as long. Measured with wrk on the same
// 2 CPUs (docs/BENCHMARKS.md, run 16): p99 of a 2.6 KB db 7-8 ms
// without, 1.0-3.3 ms with, and a fifth more req/s at less CPU per
// request. Alone on its CPU, the call returns at once: at most one in
// 50 µs of work, well under 1 % of it.
const yieldAfter = 50 * time.Microsecond

// poller is one event loop and the connections it owns. Only its own
// goroutine (run) touches them and the fields above mu, so the hot path
// takes no lock: others hand it connections through incoming and wake it
// through wakefd.
//
// Its epoll instance is level-triggered: a connection that has more to
// read than one read(2) took is reported again, and the loop answers
// every ready connection before it waits. It waits in Go's netpoller, on
// the epoll descriptor, which is readable when a connection is ready:
// so a loop with work never parks, and one without costs no thread.
type poller struct {
	s      *Server
	epfd   int
	wakefd int             // an eventfd: poke writes it
	file   *os.File        // epfd, in Go's netpoller
	raw    syscall.RawConn // file's
	conns  map[int]*lconn  // by socket
	lastID uint32          // the id of the last connection added
	events [128]syscall.EpollEvent
	// poll is wait's function for raw.Read, made once: a closure made
	// per wait escapes to the heap. It leaves its results in polled
	// and pollErr.
	poll    func(fd uintptr) bool
	polled  int
	pollErr error
	parked  bool // the last wait parked: its first poll found nothing

	now      time.Time // after the last wait
	busy     time.Time // when the loop last came back from waiting or yielding (see yieldAfter)
	nextScan time.Time
	waitTill time.Time // file's read deadline, as last set
	rbuf     [headSize]byte
	out      []byte  // the response head being built
	req      Request // Hit's, reused
	date     dateCache
	paths    map[string]string // interned request paths (see path)

	mu       sync.Mutex
	incoming []*lconn // for run to take
	poked    bool     // wakefd is written and not yet read
	exited   bool     // run has returned: adopt refuses
}

// lconn is one connection of a poller.
type lconn struct {
	sock     int
	id       uint32    // in its epoll events: a socket number can be reused within one batch
	in       []byte    // read and not answered yet; nil when empty
	scanned  int       // how much of in headEnd has seen
	long     bool      // in is a head longer than headSize: for Fallback once whole
	inHead   bool      // a kept-alive connection's next head has begun
	accepted time.Time // when a new connection was accepted, until its first response
	// deadline is when the connection is closed unless a head is whole by
	// then. net/http's limits: a new connection has ReadHeaderTimeout from
	// accept for its whole first head; a kept-alive one waits IdleTimeout
	// from the end of the last response for the first byte of the next,
	// and then ReadHeaderTimeout for the rest. A head is read whole
	// before it goes to Fallback, so that a hand-off never restarts the
	// clock: net/http sets its own deadline, but finds the head buffered.
	deadline time.Time

	writing    bool // a response is on its way: the loop waits for room, not requests
	closeAfter bool // the response in progress is the last
	file       File // its body, released when it is sent
	send

	// For the access log, when there is one: the client's address, and
	// the request whose response is on its way.
	remote string
	entry  accesslog.Entry
	began  time.Time // when its head was whole
}

func newPoller(s *Server) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &poller{s: s, epfd: epfd, wakefd: wakefd, conns: map[int]*lconn{}, paths: map[string]string{}, out: make([]byte, statusRoom, 512)}
	p.poll = func(fd uintptr) bool {
		p.polled, p.pollErr = pollNow(int(fd), p.events[:])
		ready := p.polled > 0 || p.pollErr != nil && p.pollErr != syscall.EINTR
		p.parked = p.parked || !ready
		return ready
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(wakefd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(wakefd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	syscall.SetNonblock(epfd, true) // so that os.NewFile puts it in the netpoller
	p.file = os.NewFile(uintptr(epfd), "epoll")
	p.raw, err = p.file.SyscallConn()
	if err == nil {
		err = p.file.SetReadDeadline(time.Time{}) // fails unless it is in the netpoller
	}
	if err != nil {
		p.file.Close()
		syscall.Close(wakefd)
		return nil, err
	}
	return p, nil
}

// adopt hands the loop a connection (see Server.adopt); false if the
// loop is gone.
func (p *poller) adopt(sock int, pending []byte, accepted time.Time) bool {
	c := &lconn{sock: sock, in: pending, accepted: accepted}
	if len(pending) == 0 {
		c.in = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return false
	}
	p.incoming = append(p.incoming, c)
	p.pokeLocked()
	return true
}

// poke wakes the loop: there are connections to take, or Shutdown began.
func (p *poller) poke() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		p.pokeLocked()
	}
}

func (p *poller) pokeLocked() {
	if !p.poked {
		p.poked = true
		one := [8]byte{1}
		syscall.Write(p.wakefd, one[:]) // cannot fail but by overflow, which is no loss
	}
}

// run is the loop: wait, answer what is ready, close what is past its
// deadline; until Shutdown has closed the last connection.
func (p *poller) run() {
	defer p.exit()
	p.now = time.Now()
	p.busy = p.now
	p.nextScan = p.now.Add(scanEvery)
	for {
		n, err := p.wait()
		if err != nil {
			return // never expected: the connections are closed
		}
		p.now = time.Now()
		if p.parked {
			p.parked = false
			p.busy = p.now
		} else if p.now.Sub(p.busy) >= yieldAfter {
			schedYield()
			p.now = time.Now() // the threads it let run may have taken a while
			p.busy = p.now
		}
		for i := range n {
			ev := &p.events[i]
			if int(ev.Fd) == p.wakefd {
				p.take()
				continue
			}
			if c := p.conns[int(ev.Fd)]; c != nil && c.id == uint32(ev.Pad) {
				if c.writing {
					p.write(c)
				} else {
					p.read(c)
				}
			}
		}
		if !p.now.Before(p.nextScan) {
			p.scan()
		}
		if p.s.closing.Load() {
			for _, c := range p.conns {
				if !c.writing || p.s.force.Load() {
					p.close(c)
				}
			}
			if len(p.conns) == 0 {
				return
			}
		}
	}
}

// wait returns how many events are in p.events: zero when it is time to
// scan.
func (p *poller) wait() (int, error) {
	var till time.Time
	if len(p.conns) > 0 {
		till = p.nextScan // with none, no deadline to watch: adopt pokes
	}
	if !till.Equal(p.waitTill) {
		p.file.SetReadDeadline(till)
		p.waitTill = till
	}
	err := p.raw.Read(p.poll)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err == nil {
		err = p.pollErr
	}
	return p.polled, err
}

// pollNow is epoll_wait(2) with no timeout, as a raw syscall (see
// sockWrite): it never waits.
func pollNow(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	return rawResult(n, errno)
}

// schedYield is sched_yield(2), as a raw syscall (see sockWrite): it
// returns at once, or when the threads it let run have had their turn.
func schedYield() {
	yields.Add(1)
	syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}

// yields counts the loops' schedYield calls, for the tests.
var yields atomic.Uint64

// take adds the connections others handed over.
func (p *poller) take() {
	var buf [8]byte
	p.mu.Lock()
	syscall.Read(p.wakefd, buf[:])
	p.poked = false
	incoming := p.incoming
	p.incoming = nil
	p.mu.Unlock()
	for _, c := range incoming {
		p.lastID++
		c.id = p.lastID
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.sock), Pad: int32(c.id)}
		if p.s.closing.Load() || syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, c.sock, &ev) != nil {
			closeSocket(c.sock)
			continue
		}
		p.conns[c.sock] = c
		if p.s.AccessLog != nil {
			c.remote = peerName(c.sock)
		}
		if c.accepted.IsZero() {
			p.idle(c) // back from Fallback, whose response just ended
		} else {
			c.deadline = p.after(c.accepted, p.s.headerTimeout())
		}
		if len(c.in) > 0 {
			p.serve(c, c.in)
		}
	}
}

// after returns d after t, or no deadline if d is 0.
func (p *poller) after(t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return t.Add(d)
}

// read reads what the connection sent and answers it.
func (p *poller) read(c *lconn) {
	buf := p.rbuf[:]
	if c.in != nil {
		if len(c.in) == cap(c.in) { // a long head, growing to longHeadLimit
			c.in = append(c.in, 0)[:len(c.in)]
		}
		buf = c.in[len(c.in):cap(c.in)]
	}
	n, err := sockRead(c.sock, buf)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return
	case err != nil || n == 0:
		p.close(c) // closed or reset, as net/http would
		return
	}
	if c.in == nil {
		p.serve(c, p.rbuf[:n])
	} else {
		c.in = c.in[:len(c.in)+n]
		p.serve(c, c.in)
	}
}

// serve answers the heads data holds, keeps what follows them, and hands
// the connection to Fallback at the first head the fast path does not
// answer. data is c.in or the read buffer.
func (p *poller) serve(c *lconn, data []byte) {
	for len(data) > 0 {
		n, next := headEnd(data, c.scanned)
		if n == 0 {
			c.scanned = next
			if len(data) >= headSize {
				c.long = true // Fallback's, once whole
			}
			if c.long && len(data) >= p.s.longHeadLimit() {
				p.toFallback(c, data) // net/http refuses it as too large
				return
			}
			p.keep(c, data)
			return
		}
		if c.long {
			p.toFallback(c, data)
			return
		}
		c.scanned = 0
		req, ok := parseHead(data[:n])
		var resp Response
		if ok {
			p.req = Request{Path: p.path(req.path), IfModifiedSince: req.ims, IfNoneMatch: req.inm, Now: p.now}
			p.out, resp, ok = p.s.Hit(p.out[:statusRoom], &p.req)
			if ok && p.s.AccessLog != nil {
				c.entry = accesslog.Entry{Remote: c.remote, Method: http.MethodGet, Path: p.req.Path, UserAgent: req.ua, Result: "hit"}
				c.began = p.now
			}
			p.req = Request{} // hold nothing of the buffer
		}
		if !ok {
			p.toFallback(c, data)
			return
		}
		data = data[n:]
		c.accepted, c.inHead = time.Time{}, false // from here on, keep-alive's limits
		if !p.respond(c, resp, req.close) {
			if c.writing {
				p.keep(c, data) // pipelined: answered once the response is out
			}
			return
		}
	}
	c.in = nil
	p.idle(c)
}

// maxPaths and maxPathLen bound the paths a loop interns, to about
// 1 MiB: the hot files of a tree, whose paths are under 200 bytes.
const (
	maxPaths   = 4096
	maxPathLen = 256
)

// path returns b as a string, the same string for the same path while
// it stays interned. Hit may keep a Target's strings (a prefetcher notes
// recent requests), so the path cannot be a view of the read buffer;
// and a string made per request was the loop's only allocation, a GC
// cycle a second at 200 000 hits a second, and in the latency's tail.
func (p *poller) path(b []byte) string {
	if s, ok := p.paths[string(b)]; ok { // looked up without allocating
		return s
	}
	if len(b) > maxPathLen {
		return string(b)
	}
	if len(p.paths) >= maxPaths {
		clear(p.paths) // the hot ones come back at once
	}
	s := string(b)
	p.paths[s] = s
	return s
}

// keep keeps data, what is not answered yet, in c.in, and starts the
// header clock of a kept-alive connection's head at its first bytes.
func (p *poller) keep(c *lconn, data []byte) {
	if len(data) == 0 {
		c.in = nil
		return
	}
	if c.in != nil && len(data) <= cap(c.in) {
		c.in = c.in[:copy(c.in[:cap(c.in)], data)] // data may be in c.in already, further on
	} else {
		c.in = append(make([]byte, 0, max(headSize, len(data))), data...)
	}
	if !c.writing && c.accepted.IsZero() && !c.inHead {
		c.inHead = true
		c.deadline = p.after(p.now, p.s.headerTimeout())
	}
}

// idle sets the deadline of a kept-alive connection between requests.
func (p *poller) idle(c *lconn) {
	c.accepted = time.Time{}
	c.inHead = false
	c.deadline = p.after(p.now, p.s.idleTimeout())
	if len(c.in) > 0 { // the next head has begun
		c.inHead = true
		c.deadline = p.after(p.now, p.s.headerTimeout())
	}
}

// respond sends a response, as far as the socket takes it. It reports
// whether the connection is ready for the next request: false if the
// response is still on its way (c.writing) or the connection is closed.
func (p *poller) respond(c *lconn, resp Response, close bool) bool {
	head := endHead(p.out, &p.date, p.now, resp.NotModified, close)
	c.send = send{bufs: [2][]byte{head, nil}}
	c.entry.Status = http.StatusOK
	switch {
	case resp.NotModified:
		c.entry.Status = http.StatusNotModified
	case resp.File != nil:
		c.file, c.fd, c.end = resp.File, resp.File.Fd(), resp.Size
		c.entry.Bytes = resp.Size
	default:
		c.bufs[1] = resp.Data
		c.entry.Bytes = int64(len(resp.Data))
	}
	c.closeAfter = close
	c.clock.start(p.now)
	if !c.step(c.sock) {
		if len(c.bufs[0]) > 0 {
			c.bufs[0] = bytes.Clone(c.bufs[0]) // p.out is the next response's
		}
		c.entry.UserAgent = bytes.Clone(c.entry.UserAgent) // and so is the read buffer
		c.writing = true
		p.watch(c, syscall.EPOLLOUT)
		return false
	}
	return p.sent(c)
}

// write goes on with a response once the socket has room, and then
// answers what the client pipelined meanwhile.
func (p *poller) write(c *lconn) {
	if !c.step(c.sock) {
		return
	}
	c.writing = false
	if !p.sent(c) {
		return
	}
	p.watch(c, syscall.EPOLLIN)
	switch {
	case c.sock < 0: // closed
	case len(c.in) > 0:
		p.serve(c, c.in)
	default:
		p.idle(c)
	}
}

// sent ends a response that went, or failed: it reports whether the
// connection is ready for the next request.
func (p *poller) sent(c *lconn) bool {
	if c.file != nil {
		c.file.Release()
		c.file = nil
	}
	err := c.err
	if p.s.AccessLog != nil {
		p.logged(c)
	}
	c.send = send{} // hold no response
	if err != nil || c.closeAfter || p.s.closing.Load() {
		p.close(c)
		return false
	}
	return true
}

// logged writes the access log line of c's response.
func (p *poller) logged(c *lconn) {
	if c.err != nil && c.entry.Bytes > 0 {
		c.entry.Bytes = c.off // what went of a file; of a body from memory, too little to tell
	}
	c.entry.Duration = time.Since(c.began)
	p.s.AccessLog.Log(&c.entry)
	c.entry = accesslog.Entry{}
}

// watch makes the loop wait for c to be readable (EPOLLIN) or writable.
func (p *poller) watch(c *lconn, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.sock), Pad: int32(c.id)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, c.sock, &ev); err != nil {
		p.close(c)
	}
}

// scan closes the connections past their deadline, and those whose
// client took no bytes of a response for WriteStall.
func (p *poller) scan() {
	for _, c := range p.conns {
		if c.writing {
			if p.s.WriteStall > 0 && p.now.Sub(c.clock.last) >= p.s.WriteStall {
				p.close(c)
			}
		} else if !c.deadline.IsZero() && !p.now.Before(c.deadline) {
			p.close(c)
		}
	}
	p.nextScan = p.now.Add(scanEvery)
}

// close closes c, and releases the file of a response in progress.
func (p *poller) close(c *lconn) {
	if c.sock < 0 {
		return
	}
	if c.writing && p.s.AccessLog != nil { // cut: stalled, or Shutdown gave up
		c.err = syscall.ECONNABORTED
		p.logged(c)
	}
	if c.file != nil {
		c.file.Release()
		c.file = nil
	}
	delete(p.conns, c.sock)
	closeSocket(c.sock) // which takes it out of epfd: no other descriptor shares it
	c.sock = -1
	c.send = send{}
	c.in = nil
}

// toFallback hands c, with data, what it sent that is not answered yet,
// to Fallback as a net.Conn of its own.
func (p *poller) toFallback(c *lconn, data []byte) {
	pending := bytes.Clone(data) // data may be p.rbuf
	sock := c.sock
	delete(p.conns, sock)
	c.sock = -1
	// Out of epfd before the socket gets a second descriptor: epoll
	// watches the socket until its last descriptor is closed.
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, sock, nil)
	f := os.NewFile(uintptr(sock), "")
	nc, err := net.FileConn(f) // a descriptor of its own, in Go's netpoller
	f.Close()
	if err != nil {
		return
	}
	p.s.toFallback(nc, pending)
}

// exit closes what is left when run returns.
func (p *poller) exit() {
	p.mu.Lock()
	p.exited = true
	incoming := p.incoming
	p.incoming = nil
	p.mu.Unlock()
	for _, c := range incoming {
		closeSocket(c.sock)
	}
	for _, c := range p.conns {
		p.close(c)
	}
	p.file.Close()
	syscall.Close(p.wakefd)
	p.s.wg.Done()
}

// errNoSocket: the connection is no TCP socket, which the loops cannot
// serve.
var errNoSocket = errors.New("not a TCP socket")

// detach takes nc's socket out of Go's hands: it returns a descriptor of
// its own, in non-blocking mode as Go keeps it, and closes nc. On an
// error other than errNoSocket, nc is closed.
func detach(nc net.Conn) (int, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return -1, errNoSocket
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		nc.Close()
		return -1, err
	}
	sock := -1
	var dupErr error
	err = rc.Control(func(fd uintptr) {
		sock, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	nc.Close() // Go takes its descriptor out of its netpoller and closes it; the socket stays
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return -1, err
	}
	return sock, nil
}

func closeSocket(sock int) { syscall.Close(sock) }

// peerName returns the address of sock's client, host:port.
func peerName(sock int) string {
	sa, err := syscall.Getpeername(sock)
	if err != nil {
		return ""
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return ""
}
