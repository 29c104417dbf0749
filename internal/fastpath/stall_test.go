package fastpath

import (
	"testing"
	"time"
)

// Only a send after a wakeup is the client's progress; a first try after
// a deadline (a few bytes its kernel still takes) is not.
func TestStallClock(t *testing.T) {
	const stall = time.Hour
	var c StallClock
	c.Start(time.Now().Add(-2 * stall)) // a write begun two stalls ago
	c.Sent(4096)                        // its first burst, or a retry's trickle
	if _, ok := c.Expired(stall); ok {
		t.Fatal("sends without a wakeup kept the write alive")
	}
	c.Full()
	c.Sent(0)
	if _, ok := c.Expired(stall); ok {
		t.Fatal("a wakeup that sent nothing kept the write alive")
	}
	c.Full()
	c.Sent(1)
	d, ok := c.Expired(stall)
	if !ok || time.Until(d) < stall-time.Minute {
		t.Fatalf("a send after a wakeup: Expired = %v, %v; want about a stall from now", d, ok)
	}
	c.Sent(1) // the retry's first try
	c.last = c.last.Add(-2 * stall)
	if _, ok := c.Expired(stall); ok {
		t.Fatal("the retry's first try counted as progress")
	}
}
