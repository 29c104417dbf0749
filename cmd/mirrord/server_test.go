package main

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/fastpath"
)

// server.fast_path picks the server: the fast path in front of net/http,
// or net/http alone; the limits are the same.
func TestNewServer(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h := http.NotFoundHandler()
	fp, ok := newServer(config.Server{FastPath: true}, h, nil, log, nil).(*fastpath.Server)
	if !ok {
		t.Fatal("fast_path true: not a fastpath.Server")
	}
	std, ok := newServer(config.Server{FastPath: false}, h, nil, log, nil).(stdServer)
	if !ok {
		t.Fatal("fast_path false: not net/http alone")
	}
	if fp.Fallback.ReadHeaderTimeout != std.ReadHeaderTimeout || fp.Fallback.IdleTimeout != std.IdleTimeout ||
		fp.Fallback.MaxHeaderBytes != std.MaxHeaderBytes || std.wrap == nil || fp.WriteStall != fastpath.WriteStall {
		t.Errorf("limits differ: fast path's net/http %+v, net/http alone %+v", fp.Fallback, std.Server)
	}
}
