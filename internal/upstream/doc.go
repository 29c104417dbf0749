// Package upstream fetches files from upstream mirrors: one retrying HTTP
// client (go-retryablehttp) shared by every distro, and per distro a
// MirrorSet that expands pacman-style URL templates, ranks its mirrors by
// measured health, fails over between them (also in the middle of a body,
// for immutable files, resuming with a Range request) and does conditional
// GETs. It never writes to disk and imports nothing of the project; only its
// tests import internal/faultserver.
package upstream
