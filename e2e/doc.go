// Package e2e holds end-to-end tests: they build the mirrord binary, run it
// on loopback with their own config and upstreams, and drive it with real
// clients (curl-like HTTP, and the real pacman and repo-add).
package e2e
