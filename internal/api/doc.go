// Package api is mirrord's JSON REST API under /api/v1/: listings of every
// repo's packages (read from the {repo}.db in the tree, whatever the repo's
// mode), uploads and deletes in hosted repos (through internal/hosted),
// publish jobs, sync triggers and status.
//
// Writes need a bearer token from api.tokens (or, with none configured, a
// loopback client). Every error leaves as {"error": "..."} with its status
// chosen in one place, errors.go.
package api
