#!/usr/bin/env bash
# bench-db.sh: build the same N-package repository (.db and .files, gzip)
# with pacman's repo-add and with mirrord's writer (internal/alpm via
# internal/alpm/cmd/alpmdb), check both hold identical entries, and print
# the time of each and the ratio. The goal is a ratio of at least 20.
#
#   scripts/bench-db.sh            N=1000 by default
#   N=200 scripts/bench-db.sh
set -euo pipefail

N=${N:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v repo-add >/dev/null; then
	# CI installs repo-add; elsewhere a missing tool is only a skip.
	if [[ -n ${CI:-} ]]; then
		echo "bench-db: repo-add not found and CI is set" >&2
		exit 1
	fi
	echo "bench-db: repo-add not found, skipping" >&2
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$root" && go build -o "$work/alpmdb" ./internal/alpm/cmd/alpmdb)
"$work/alpmdb" gen -n "$N" -dir "$work/pkgs"
mkdir -p "$work/repo-add" "$work/mirrord"

now() { date +%s.%N; }

t0=$(now)
repo-add -q "$work/repo-add/bench.db.tar.gz" "$work"/pkgs/*.pkg.tar.zst
t1=$(now)
"$work/alpmdb" build "$work/mirrord/bench.db.tar.gz" "$work"/pkgs/*.pkg.tar.zst
t2=$(now)

"$work/alpmdb" cmp "$work/repo-add/bench.db" "$work/mirrord/bench.db" >/dev/null
"$work/alpmdb" cmp "$work/repo-add/bench.files" "$work/mirrord/bench.files" >/dev/null

awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
	ra = b - a; mi = c - b
	printf "bench-db: %d packages, .db + .files, gzip\n", n
	printf "  repo-add  %8.3f s\n", ra
	printf "  mirrord   %8.3f s\n", mi
	printf "  ratio     %8.1fx faster (goal: 20x)\n", ra / mi
}'
