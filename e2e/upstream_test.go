package e2e

import (
	"testing"

	"github.com/mirrord/mirrord/internal/faultserver"
)

// newUpstream starts a static mirror on 127.0.0.1 over a fresh directory.
func newUpstream(t *testing.T) *faultserver.Server {
	t.Helper()
	return faultserver.NewTest(t, t.TempDir())
}
