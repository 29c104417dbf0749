// Package api is mirrord's JSON REST API under /api/v1/: listings of every
// repo's packages (read from the {repo}.db in the tree, whatever the repo's
// mode), uploads and deletes in hosted repos (through internal/hosted),
// publish jobs, sync triggers and status.
//
// Every write needs a bearer token in the Authorization header: one of
// api.tokens or, with none configured, the admin token of
// {data_dir}/admin.token (auth.go). No client is exempt, and a write a
// browser sends for another site is refused whatever its token. Every
// error leaves as {"error": "..."} with its status chosen in one place,
// errors.go.
package api
