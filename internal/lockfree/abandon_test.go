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

// The leader's reader from Join exists before its fill starts, so the
// leader reads its own file even when the fill ends at once. This was
// TestAbandon's flake (about 1 run in 300 under -race -cpu 2): Join was
// Do then Flight.Join, and a fill that ended in between left the leader a
// late joiner with ErrNoFile (TestJoinAfterEndHasNoFile is that order).
func TestJoinLeaderReadsItsFill(t *testing.T) {
	var g Group
	data := pattern(8 << 10)
	for round := range 100 {
		var atStart int
		fill := func(ctx context.Context, f *Flight) error {
			atStart = f.Readers()
			f.Begin(tempFile(t), Meta{Size: int64(len(data))})
			_, err := f.Write(data)
			return err
		}
		f, r, leader := g.Join(t.Context(), "k", fill)
		if !leader {
			t.Fatalf("round %d: Join with no flight in progress is not the leader", round)
		}
		if g.Abandon(f, nil) {
			t.Fatalf("round %d: Abandon succeeded with the leader's reader open", round)
		}
		got, err := readAll(r)
		r.Close()
		<-f.Done()
		if atStart != 1 {
			t.Errorf("round %d: the fill started with %d readers, want 1 (the leader's)", round, atStart)
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: the leader read %d bytes, %v; want %d, nil", round, len(got), err, len(data))
		}
	}
}

// A reader that joins a flight after its fill returned gets ErrNoFile (the
// file is in the cache by then). This is the order, forced, in which the
// leader of Join lost its file before Join made its reader first.
func TestJoinAfterEndHasNoFile(t *testing.T) {
	var g Group
	data := pattern(4 << 10)
	f, leader := g.Do(t.Context(), "k", newGatedFill(t, data).open().fill)
	if !leader {
		t.Fatal("Do with no flight in progress is not the leader")
	}
	<-f.Done()
	r, ok := f.Join(t.Context())
	if !ok {
		t.Fatal("Join on a finished, not abandoned flight refused")
	}
	defer r.Close()
	if _, err := r.Wait(); !errors.Is(err, ErrNoFile) {
		t.Errorf("Wait() after the fill returned = %v, want ErrNoFile", err)
	}
}
