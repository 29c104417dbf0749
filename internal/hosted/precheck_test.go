package hosted

import (
	"testing"

	"github.com/mirrord/mirrord/internal/alpm"
)

// TestDecodeBudget: a reservation holds its window of the budget until it
// is released; one larger than the budget takes all of it rather than
// waiting forever.
func TestDecodeBudget(t *testing.T) {
	release := reserveDecode(32 << 20)
	if !decodeMemory.TryAcquire(decodeBudget - 32<<20) {
		t.Fatal("a 32 MiB reservation took more than 32 MiB of the budget")
	}
	if decodeMemory.TryAcquire(1) {
		t.Fatal("the budget held more than decodeBudget")
	}
	decodeMemory.Release(decodeBudget - 32<<20)
	release()

	release = reserveDecode(4 * alpm.MaxWindow)
	if decodeMemory.TryAcquire(1) {
		t.Error("a reservation over the budget left some of it")
	}
	release()
	if !decodeMemory.TryAcquire(decodeBudget) {
		t.Fatal("the budget is not whole after every release")
	}
	decodeMemory.Release(decodeBudget)
}
