#!/usr/bin/env bash
# bench-index.sh: the directory index of a 10,000-file repo folder,
# mirrord vs nginx `autoindex on` over the same folder (docs/BENCHMARKS.md,
# issue 14): wrk with 20 and with 1 connection, requests per second,
# latency, server CPU per request and bytes per page; and mirrord's first
# (uncached) render.
#
#   scripts/bench-index.sh              about 1 minute
#   FILES=15000 SECONDS_EACH=5 scripts/bench-index.sh
#   MIRRORD=/path/to/mirrord scripts/bench-index.sh   another build, not built here
#
# Listens on 127.0.0.1:BASE_PORT (mirrord) and BASE_PORT+1 (nginx).
# Needs nginx, wrk and curl.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
FILES=${FILES:-10000}
SECONDS_EACH=${SECONDS_EACH:-10}
BASE_PORT=${BASE_PORT:-18490}
p_m=$BASE_PORT
p_n=$((BASE_PORT + 1))
for tool in nginx wrk curl python3; do
	command -v "$tool" >/dev/null || { echo "bench-index: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench-index.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mirrord=${MIRRORD:-}
if [[ -z $mirrord ]]; then
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -o bin/mirrord ./cmd/mirrord)
	mirrord=$root/bin/mirrord
fi

# A hosted repo folder of FILES packages of 1 KiB, placed by hand: the
# index lists what the folder holds.
dir=$work/data/tree/archlinux/custom/os/x86_64
mkdir -p "$dir"
python3 - "$dir" "$FILES" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "pkg%05d-1.0-1-x86_64.pkg.tar.zst" % i), "wb") as f:
        f.write(b"x" * 1024)
EOF
path=/archlinux/custom/os/x86_64/

cat >"$work/mirrord.yaml" <<EOF
distros:
  archlinux:
    layout: \$repo/os/\$arch
    arch: [x86_64]
    repos:
      custom: {mode: hosted}
EOF
"$mirrord" serve --config "$work/mirrord.yaml" --listen "127.0.0.1:$p_m" --data-dir "$work/data" 2>"$work/mirrord.log" &
m_pid=$!
pids+=($m_pid)

n=$work/nginx
mkdir -p "$n/tmp"
user=""
if [[ $EUID -eq 0 ]]; then user="user root;"; fi
cat >"$n/nginx.conf" <<EOF
$user
daemon off;
worker_processes 2;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  server {
    listen 127.0.0.1:$p_n;
    root $work/data/tree;
    autoindex on;
  }
}
EOF
nginx -p "$n" -c "$n/nginx.conf" -e "$n/error.log" &
pids+=($!)

wait_http() {
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-index: $1 did not answer" >&2
	exit 1
}
wait_http "http://127.0.0.1:$p_m/readyz"
# The first request renders the page: its time is the uncached cost.
first=$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$p_m$path")
wait_http "http://127.0.0.1:$p_n$path"
workers=$(pgrep -P "$(cat "$n/nginx.pid")" | tr '\n' ' ')

cpu_ticks() {
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
	echo "$t"
}
hz=$(getconf CLK_TCK)

# run NAME PORT CONNS PIDS...: one wrk run; prints a table row.
run() {
	local name=$1 port=$2 conns=$3
	shift 3
	local before after out rps reqs p50 p99 bytes
	bytes=$(curl -fsS -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port$path")
	before=$(cpu_ticks "$@")
	out=$(wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${SECONDS_EACH}s" --latency "http://127.0.0.1:$port$path")
	after=$(cpu_ticks "$@")
	rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
	p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
	printf '| %s | %s | %s | %s | %s / %s | %.2f |\n' "$name" "$conns" "$bytes" "$rps" "$p50" "$p99" \
		"$(echo "($after - $before) * 1000 / $hz / $reqs" | bc -l)"
}

echo
echo "$FILES files; mirrord's first request (renders the page): ${first} s"
echo
echo "| server | connections | bytes per page | req/s | latency p50 / p99 | server CPU ms/request |"
echo "|---|---:|---:|---:|---|---:|"
for conns in 20 1; do
	run mirrord "$p_m" "$conns" "$m_pid"
	# shellcheck disable=SC2086
	run "nginx autoindex" "$p_n" "$conns" $workers
done
