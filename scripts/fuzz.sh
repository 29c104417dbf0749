#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 10s).
# Usage: scripts/fuzz.sh [FUZZTIME]
set -euo pipefail
fuzztime=${1:-${FUZZTIME:-10s}}
cd "$(dirname "$0")/.."
status=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($fuzztime)"
		if ! go test -run "^$" -fuzz "^${target}$" -fuzztime "$fuzztime" -fuzzminimizetime 3s "$pkg" >/tmp/mirrord-fuzz.log 2>&1; then
			cat /tmp/mirrord-fuzz.log
			status=1
		fi
	done
done
exit $status
