package main

import (
	"testing"

	"github.com/mirrord/mirrord/config"
)

// What a node that does not publish forwards to the publisher: the jobs,
// and the API views and web pages of a hosted repo; nothing of the other
// repos, and nothing a path names only in part.
func TestPublisherOnly(t *testing.T) {
	cfg := &config.Config{Distros: map[string]config.Distro{
		"archlinux": {Repos: map[string]config.Repo{"myrepo": {Mode: config.ModeHosted}, "core": {Mode: config.ModeProxy}}},
	}}
	p := &clusterPublisher{cfg: cfg}
	for path, want := range map[string]bool{
		"/api/v1/jobs/0123": true,
		"/api/v1/repos/archlinux/myrepo/x86_64/packages":       true,
		"/api/v1/repos/archlinux/myrepo/key":                   true,
		"/api/v1/repos/archlinux/core/x86_64/packages":         false,
		"/api/v1/repos/archlinux/myrepo":                       false,
		"/api/v1/repos":                                        false,
		"/api/v1/status":                                       false,
		"/ui/repo/archlinux/myrepo":                            true,
		"/ui/pkg/archlinux/myrepo/x86_64/foo":                  true,
		"/ui/repo/archlinux/core":                              false,
		"/ui/pkg/archlinux/core/x86_64/foo":                    false,
		"/ui/repo/archlinux":                                   false,
		"/ui/search":                                           false,
		"/":                                                    false,
		"/archlinux/myrepo/os/x86_64/myrepo.db":                false, // the tree's: HostedForward
		"/ui/repo/nonesuch/myrepo":                             false,
		"/api/v1/repos/archlinux/myrepo/x86_64/packages/pkgnm": true,
	} {
		if got := p.publisherOnly(path); got != want {
			t.Errorf("publisherOnly(%s) = %v; want %v", path, got, want)
		}
	}
}
