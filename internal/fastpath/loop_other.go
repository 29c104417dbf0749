//go:build !linux

package fastpath

import (
	"errors"
	"net"
	"time"
)

// poller is the event loop of Linux (loop_linux.go). Elsewhere there is
// none, and Fallback serves every connection.
type poller struct{}

func newPoller(*Server) (*poller, error) {
	return nil, errors.New("fastpath: no event loop on this system")
}

func (*poller) run()                              {}
func (*poller) poke()                             {}
func (*poller) adopt(int, []byte, time.Time) bool { return false }

var errNoSocket = errors.New("not a TCP socket")

func detach(net.Conn) (int, error) { return -1, errNoSocket }

func closeSocket(int) {}
