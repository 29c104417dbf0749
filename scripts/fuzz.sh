#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 10s).
# Usage: scripts/fuzz.sh [FUZZTIME]
#
# A target that fails without writing a failing input to its
# testdata/fuzz folder is run once more: Go 1.26's fuzz coordinator can
# report "context deadline exceeded" when -fuzztime ends while a worker is
# busy (go.dev/issue/75804, fixed in Go 1.27). A real finding always
# writes its input, and fails at once.
set -euo pipefail
fuzztime=${1:-${FUZZTIME:-10s}}
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/mirrord-fuzz.XXXXXX)
trap 'rm -f "$log"' EXIT
# inputs DIR TARGET: how many inputs TARGET's corpus folder holds.
inputs() {
	local f=("$1"/testdata/fuzz/"$2"/*)
	echo ${#f[@]}
}
shopt -s nullglob
status=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		for try in 1 2; do
			echo "fuzz $pkg $target ($fuzztime)"
			before=$(inputs "$dir" "$target")
			if go test -run "^$" -fuzz "^${target}$" -fuzztime "$fuzztime" -fuzzminimizetime 3s "$pkg" >"$log" 2>&1; then
				break
			fi
			after=$(inputs "$dir" "$target")
			if [[ $try == 1 && $after == "$before" ]] && grep -q 'context deadline exceeded' "$log"; then
				echo "  no failing input written (go.dev/issue/75804): once more"
				continue
			fi
			cat "$log"
			status=1
			break
		done
	done
done
exit $status
