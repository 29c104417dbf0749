package upstream

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// slots bounds the requests in flight to one mirror host (its label,
// host:port), shared by every MirrorSet that names the host. A request
// takes a slot in open, before it is sent, and holds it until its answer
// is handled: at once for an error, a 304, a 404 or a HEAD, else until
// its body ends or is closed (attempt.close). A fetch never holds two:
// it gives its slot back before it fails over or resumes on the next
// mirror (or on the same one), so waiters cannot deadlock.
type slots struct {
	// sem holds one token per request in flight; its capacity is
	// Options.MaxConnsPerMirror. A send waits its turn (FIFO) when full.
	sem chan struct{}
	// waiting is the mirror's waiting-requests gauge: up while a request
	// waits for a slot.
	waiting prometheus.Gauge
}

// acquire takes a slot, waiting for one as long as ctx lasts. The wait
// comes before the request is sent, so it counts against neither the
// header timeout nor the stall watchdog, only against ctx. On error the
// caller has taken nothing and must not release.
func (s *slots) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	s.waiting.Inc()
	defer s.waiting.Dec()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a connection (%d in use): %w", cap(s.sem), context.Cause(ctx))
	}
}

// release gives back a slot that acquire took. Giving back one more than
// were taken is a bug that would let a request past the limit later, so
// it panics rather than block or pass.
func (s *slots) release() {
	select {
	case <-s.sem:
	default:
		panic("upstream: release of a request slot that was not taken")
	}
}

// slotsLocked returns the slots of the mirror host label, made on first
// use; c.mu is held.
func (c *Client) slotsLocked(label string) *slots {
	s, ok := c.slots[label]
	if !ok {
		s = &slots{sem: make(chan struct{}, c.opts.MaxConnsPerMirror), waiting: c.metrics.waiting.WithLabelValues(label)}
		c.slots[label] = s
	}
	return s
}
