package fastpath

import "time"

// StallClock is the write-stall rule of every response mirrord sends, on
// the fast path and (through proxy.StallConn) on net/http's: nginx's
// send_timeout. A write may wait WriteStall from the last time the client
// took bytes, which is when a send follows a wakeup (the kernel says the
// socket has room again, which it does once the client has read a good
// part of what is queued), not when any send moves a byte: a client that
// never reads has its kernel take a few more bytes now and then (the send
// buffer grows, the receive queue is compacted), and counting those, each
// retry after the deadline looked like progress, and such a client was
// cut after several stall periods, or never.
//
// The zero StallClock has seen no progress; Start begins a write.
type StallClock struct {
	last time.Time // when the client last took bytes
	woke bool      // the next send follows a wakeup, not a first try
}

// Start begins a write at now: the client asked for what it carries.
func (c *StallClock) Start(now time.Time) { c.last, c.woke = now, false }

// Full notes that the socket is full: the next send follows a wakeup.
func (c *StallClock) Full() { c.woke = true }

// Sent notes a send of n bytes.
func (c *StallClock) Sent(n int) {
	if n > 0 && c.woke {
		c.last = time.Now()
	}
}

// Expired is called when the write deadline passed: it returns the new
// deadline and true if the client took bytes within the last stall, and
// false if the write is stalled.
func (c *StallClock) Expired(stall time.Duration) (time.Time, bool) {
	if time.Since(c.last) >= stall {
		return time.Time{}, false
	}
	c.woke = false // the retry's first try is no wakeup
	return c.last.Add(stall), true
}
