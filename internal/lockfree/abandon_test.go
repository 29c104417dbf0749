package lockfree

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
)

// Abandon ends a flight only while nobody reads it, and takes it out of
// the registry at once: the next Join starts a fresh flight.
func TestAbandon(t *testing.T) {
	var g Group
	data := pattern(64 << 10)
	first := newGatedFill(t, data)
	f, r, leader := g.Join(t.Context(), "k", first.fill)
	if !leader {
		t.Fatal("first Join is not the leader")
	}
	if g.Abandon(f, nil) {
		t.Fatal("Abandon succeeded with a reader open")
	}
	r.Close()
	if !g.Abandon(f, nil) {
		t.Fatal("Abandon failed with no reader")
	}
	if g.Abandon(f, nil) {
		t.Error("second Abandon succeeded")
	}
	if _, ok := f.Join(t.Context()); ok {
		t.Error("Join on an abandoned flight succeeded")
	}
	if got := g.Lookup("k"); got == f {
		t.Error("abandoned flight still in the registry")
	}
	first.open()
	<-f.Done()
	if !errors.Is(f.Err(), ErrAborted) && !errors.Is(first.ctxErrAtFinish.Load().(errBox).err, context.Canceled) {
		t.Errorf("abandoned fill: Err() = %v, ctx at finish %v; want its context cancelled", f.Err(), first.ctxErrAtFinish.Load())
	}

	second := newGatedFill(t, data).open()
	f2, r2, leader := g.Join(t.Context(), "k", second.fill)
	defer r2.Close()
	if f2 == f || !leader {
		t.Fatalf("Join after Abandon returned the abandoned flight (leader %v)", leader)
	}
	got, err := readAll(r2)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("new flight: %d bytes, %v", len(got), err)
	}
}

// Readers joining while others leave and abandon: a reader that joined is
// never aborted under it. Run with -race.
func TestAbandonRacesJoin(t *testing.T) {
	var g Group
	data := pattern(8 << 10)
	for round := range 200 {
		fill := func(ctx context.Context, f *Flight) error {
			f.Begin(tempFile(t), Meta{Size: int64(len(data))})
			select {
			case <-ctx.Done(): // abandoned
				return ctx.Err()
			default:
			}
			_, err := f.Write(data)
			return err
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				f, r, _ := g.Join(t.Context(), "k", fill)
				got, err := readAll(r)
				r.Close()
				if errors.Is(err, ErrNoFile) {
					return // joined as the flight ended: the file is in the cache
				}
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("round %d: a joined reader got %d bytes, %v", round, len(got), err)
				}
				g.Abandon(f, nil) // as the proxy does when its client leaves
			})
		}
		wg.Wait()
	}
}
