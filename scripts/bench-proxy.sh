#!/usr/bin/env bash
# bench-proxy.sh: the proxy benchmarks of docs/BENCHMARKS.md, mirrord and
# nginx side by side on the same files, with ratios mirrord/nginx.
#
#   1. cache hits, wrk --latency, from mirrord's cache vs nginx as a tuned
#      static server (access_log off, open_file_cache, sendfile, tcp_nopush):
#      a 2.6 KB db and core.db (128 KiB) of proxy repos (fresh: younger
#      than db_max_age), core.db with If-Modified-Since (304), 200
#      packages of 33 KiB (rotating over them), one of 100 MiB;
#   2. cold coalescing: 50 clients at once on one uncached 100 MB file
#      behind a 20 MB/s upstream, mirrord vs nginx proxy_cache_lock;
#   3. memory: mirrord's peak RSS (VmHWM) while 500 clients download cold
#      and hot files of 20 MB and 100 MB.
#
#   scripts/bench-proxy.sh                 everything, about 9 minutes
#   HIT_SECONDS=3 scripts/bench-proxy.sh   shorter hit runs (6 s by default)
#   ROUNDS=3 scripts/bench-proxy.sh        three hit runs per server and workload, not five
#   FAST_PATH=false scripts/bench-proxy.sh mirrord with server.fast_path false
#   ACCESS_LOG=true scripts/bench-proxy.sh mirrord with its access log on (to a file), as
#                                          by default; off otherwise, as nginx's is
#   HITS_ONLY=1 scripts/bench-proxy.sh     the hit runs only (part 1), about 6 minutes
#   WORKLOADS="db304 tinydb" scripts/bench-proxy.sh
#                                          those hit workloads only (of tinydb db db304 pkg big)
#   MIRRORD_BIN=/tmp/mirrord-old scripts/bench-proxy.sh
#                                          that mirrord binary instead of the tree's (to compare builds)
#   NGINX_REUSEPORT=1 scripts/bench-proxy.sh
#                                          nginx's static server with listen ... reuseport: the
#                                          kernel spreads connections over its workers evenly;
#                                          without it one worker often takes most of them
#   PIN=1 scripts/bench-proxy.sh           the hit runs with the load generator on CPU 0 and the
#                                          servers on CPU 1 (wrk -t1, one nginx worker,
#                                          GOMAXPROCS=1): each server's own cost, without
#                                          the load generator's threads sharing its cores
#
# Each hit figure is the median of the ROUNDS runs, each column on its
# own (errors are summed): on 2 shared cores a server's req/s and p99
# swing with how the kernel places its threads and the load generator's
# (nginx's from 147 000 to 230 000 req/s on one 304 in one run), and the
# best run of each measured that luck, not the server (docs/BENCHMARKS.md,
# run 17). Every run is printed as it ends.
#
# Everything listens on 127.0.0.1, on ports BASE_PORT..BASE_PORT+5.
# Needs nginx, wrk, curl and jq.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
HIT_SECONDS=${HIT_SECONDS:-6}
HIT_CONNS=${HIT_CONNS:-64}
ROUNDS=${ROUNDS:-5}
FAST_PATH=${FAST_PATH:-true}
ACCESS_LOG=${ACCESS_LOG:-false}
PIN=${PIN:-0}
HITS_ONLY=${HITS_ONLY:-0}
NGINX_REUSEPORT=${NGINX_REUSEPORT:-0}
WORKLOADS=${WORKLOADS:-tinydb db db304 pkg big}
BASE_PORT=${BASE_PORT:-18480}
p_up=$BASE_PORT              # upstream, unthrottled: fills mirrord's cache for the hit runs
p_slow=$((BASE_PORT + 1))    # upstream at 20 MB/s per response
p_hit=$((BASE_PORT + 2))     # mirrord for hits
p_cold=$((BASE_PORT + 3))    # mirrord, fresh, for the cold and memory runs
p_nginx=$((BASE_PORT + 4))   # nginx static
p_ncache=$((BASE_PORT + 5))  # nginx proxy_cache in front of the slow upstream

for tool in nginx wrk curl jq; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench-proxy: $tool not found" >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/bench-proxy.XXXXXX)
chmod 755 "$work" # nginx workers may run as nobody
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n== %s\n' "$*" >&2; }

# --- build ---------------------------------------------------------------
log "build"
mkdir -p "$root/bin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o bin/mirrord ./cmd/mirrord &&
	CGO_ENABLED=0 go build -trimpath -o bin/mirrord-load ./cmd/mirrord-load)
mirrord=${MIRRORD_BIN:-$root/bin/mirrord}
load=$root/bin/mirrord-load

# --- the tree -------------------------------------------------------------
# src/ is the upstream mirror and nginx's root; URL paths are the same on
# every server: /archlinux/core/os/x86_64/FILE.
log "tree"
dir=$work/src/archlinux/core/os/x86_64
mkdir -p "$dir"
for i in $(seq -w 0 199); do
	head -c 33792 /dev/urandom >"$dir/small$i-1.0-1-x86_64.pkg.tar.zst"
done
head -c 104857600 /dev/urandom >"$dir/big-1.0-1-x86_64.pkg.tar.zst"
head -c 131072 /dev/urandom >"$dir/core.db"
tdir=$work/src/archlinux/testing/os/x86_64
mkdir -p "$tdir"
head -c 2600 /dev/urandom >"$tdir/testing.db"
head -c 100000000 /dev/urandom >"$dir/cold-1.0-1-x86_64.pkg.tar.zst"
head -c 20000000 /dev/urandom >"$dir/mem20-1.0-1-x86_64.pkg.tar.zst"
cp "$dir/cold-1.0-1-x86_64.pkg.tar.zst" "$dir/mem100-1.0-1-x86_64.pkg.tar.zst"
path=/archlinux/core/os/x86_64

# --- servers --------------------------------------------------------------
start_upstream() { # port rate
	"$load" upstream --root "$work/src/archlinux" --listen "127.0.0.1:$1" --rate "$2" >"$work/upstream-$1.out" 2>&1 &
	pids+=($!)
}

start_mirrord() { # port upstream-port name; sets mirrord_pid
	mkdir -p "$work/$3"
	cat >"$work/$3/mirrord.yaml" <<-EOF
		log: {level: warn, access: $ACCESS_LOG}
		server: {fast_path: $FAST_PATH}
		cache: {max_size: 10GiB, db_max_age: 1h}
		distros:
		  archlinux:
		    layout: \$repo/os/\$arch
		    arch: [x86_64]
		    upstreams: ["http://127.0.0.1:$2/\$repo/os/\$arch"]
		    repos:
		      core: {mode: proxy}
		      testing: {mode: proxy}
	EOF
	GOMAXPROCS=$mirrord_procs $srv_pin "$mirrord" serve --config "$work/$3/mirrord.yaml" --data-dir "$work/$3/data" \
		--listen "127.0.0.1:$1" 2>"$work/$3/mirrord.log" &
	mirrord_pid=$!
	pids+=($mirrord_pid)
}

wait_http() { # url
	for _ in $(seq 1 200); do
		if curl -sf -o /dev/null "$1"; then return 0; fi
		sleep 0.05
	done
	echo "bench-proxy: $1 did not answer" >&2
	exit 1
}

start_nginx() {
	local n=$work/nginx user="" nginx_listen=""
	if [[ $NGINX_REUSEPORT == 1 ]]; then nginx_listen=" reuseport"; fi
	mkdir -p "$n/cache" "$n/tmp"
	if [[ $EUID -eq 0 ]]; then user="user root;"; fi
	cat >"$n/nginx.conf" <<-EOF
		$user
		daemon off;
		worker_processes $nginx_workers;
		pid $n/nginx.pid;
		error_log $n/error.log warn;
		events { worker_connections 4096; }
		http {
		  access_log off;
		  open_file_cache max=10000;
		  sendfile on;
		  tcp_nopush on;
		  keepalive_requests 1000000;
		  default_type application/octet-stream;
		  client_body_temp_path $n/tmp/body;
		  proxy_temp_path $n/tmp/proxy;
		  fastcgi_temp_path $n/tmp/fastcgi;
		  uwsgi_temp_path $n/tmp/uwsgi;
		  scgi_temp_path $n/tmp/scgi;
		  proxy_cache_path $n/cache levels=1:2 keys_zone=cold:10m max_size=10g inactive=1h use_temp_path=off;
		  server {
		    listen 127.0.0.1:$p_nginx$nginx_listen;
		    root $work/src;
		  }
		  server {
		    listen 127.0.0.1:$p_ncache;
		    location /archlinux/ {
		      proxy_pass http://127.0.0.1:$p_slow/;
		      proxy_http_version 1.1;
		      proxy_set_header Connection "";
		      proxy_buffering on;
		      proxy_cache cold;
		      proxy_cache_valid 200 1h;
		      proxy_cache_lock on;
		      proxy_cache_lock_timeout 1h;
		      proxy_cache_lock_age 1h;
		    }
		  }
		}
	EOF
	$srv_pin nginx -p "$n" -c "$n/nginx.conf" -e "$n/error.log" &
	nginx_pid=$!
	pids+=($nginx_pid)
}

# cpu_ticks PID...: user + system CPU time of the processes, in clock ticks.
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		if [[ -r /proc/$p/stat ]]; then t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); fi
	done
	echo "$t"
}

# vmhwm_reset PID / vmhwm PID: peak RSS in MB since the last reset
# (writing 5 to clear_refs resets VmHWM, Linux >= 4.0).
vmhwm_reset() { echo 5 >"/proc/$1/clear_refs"; }
vmhwm() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# PIN=1: the servers on CPU 1, the load generator on CPU 0. The cold and
# memory runs are pinned too (their mirrord is started the same way).
srv_pin="" wrk_pin="" wrk_threads=2 nginx_workers=2 mirrord_procs=""
if [[ $PIN == 1 ]]; then
	if [[ $(nproc) -lt 2 ]]; then
		echo "bench-proxy: PIN=1 needs 2 CPUs" >&2
		exit 1
	fi
	srv_pin="taskset -c 1" wrk_pin="taskset -c 0" wrk_threads=1 nginx_workers=1 mirrord_procs=1
fi
log "start servers"
start_upstream "$p_up" 0
start_upstream "$p_slow" 20MB
start_nginx
start_mirrord "$p_hit" "$p_up" hit
hit_pid=$mirrord_pid
wait_http "http://127.0.0.1:$p_up/_count"
wait_http "http://127.0.0.1:$p_slow/_count"
wait_http "http://127.0.0.1:$p_hit/readyz"
wait_http "http://127.0.0.1:$p_nginx$path/small000-1.0-1-x86_64.pkg.tar.zst"

# --- 1. hits --------------------------------------------------------------
log "fill mirrord's cache through the unthrottled upstream"
urls=$(for i in $(seq -w 0 199); do printf 'http://127.0.0.1:%s%s/small%s-1.0-1-x86_64.pkg.tar.zst,' "$p_hit" "$path" "$i"; done)
urls+="http://127.0.0.1:$p_hit$path/big-1.0-1-x86_64.pkg.tar.zst,http://127.0.0.1:$p_hit$path/core.db,"
urls+="http://127.0.0.1:$p_hit/archlinux/testing/os/x86_64/testing.db"
"$load" get --url "$urls" --clients 4 --requests 203 >/dev/null
# Every file once: a file left out would be a miss inside a hit run.
fetched=$(curl -sf "http://127.0.0.1:$p_up/_count" | jq .requests)
if [[ $fetched != 203 ]]; then
	echo "bench-proxy: filling mirrord's cache took $fetched upstream requests, want 203" >&2
	exit 1
fi
"$load" get --url "$urls" --clients 4 --requests 203 --json >"$work/fill2.json" # all hits now
if [[ $(jq .errors "$work/fill2.json") != 0 ]]; then
	echo "bench-proxy: errors filling mirrord's cache: $(jq -r .first_error "$work/fill2.json")" >&2
	exit 1
fi
# The db's Last-Modified, the same on both servers (the file's mtime).
ims=$(curl -sf -o /dev/null -D - "http://127.0.0.1:$p_hit$path/core.db" |
	awk 'tolower($1) == "last-modified:" { sub(/^[^:]*: /, ""); sub(/\r$/, ""); print }')
for port in "$p_hit" "$p_nginx"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $ims" "http://127.0.0.1:$port$path/core.db")
	if [[ $code != 304 ]]; then
		echo "bench-proxy: core.db with If-Modified-Since: $ims = $code on port $port, want 304" >&2
		exit 1
	fi
done

# stats.lua prints wrk's summary in one line; small.lua also rotates over
# the 200 small packages.
cat >"$work/stats.lua" <<-EOF
	done = function(s, latency, requests)
	  local e = s.errors
	  io.write(string.format("WRK %d %d %d %d %.3f %.3f\n", s.requests, s.bytes, s.duration,
	    e.connect + e.read + e.write + e.status + e.timeout,
	    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
	end
EOF
cat "$work/stats.lua" - >"$work/small.lua" <<-EOF
	local i = 0
	request = function()
	  i = (i + 1) % 200
	  return wrk.format("GET", string.format("$path/small%03d-1.0-1-x86_64.pkg.tar.zst", i))
	end
EOF

# wrk_run WORKLOAD PORT NAME PID...: one run; appends "req/s MB/s p50ms
# p99ms errors cpu-us/request" to $work/NAME.WORKLOAD. The server's CPU
# time per request holds up better than req/s when other work shares the
# cores. (wrk counts a 304 as a success: only statuses above 399 are
# errors.)
wrk_run() {
	local w=$1 port=$2 name=$3 t0 t1 conns=$HIT_CONNS
	shift 3
	local args=(-s "$work/stats.lua")
	case $w in
	tinydb) args+=("http://127.0.0.1:$port/archlinux/testing/os/x86_64/testing.db") ;;
	db) args+=("http://127.0.0.1:$port$path/core.db") ;;
	db304) args+=(-H "If-Modified-Since: $ims" "http://127.0.0.1:$port$path/core.db") ;;
	pkg) args=(-s "$work/small.lua" "http://127.0.0.1:$port/") ;;
	big)
		conns=4
		args+=("http://127.0.0.1:$port$path/big-1.0-1-x86_64.pkg.tar.zst")
		;;
	esac
	t0=$(cpu_ticks "$@")
	$wrk_pin wrk -t"$wrk_threads" -c"$conns" -d"${HIT_SECONDS}s" --latency "${args[@]}" >"$work/wrk.out"
	t1=$(cpu_ticks "$@")
	awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/^WRK/ {
		printf "%.1f %.1f %.3f %.3f %d %.1f\n", $2 / ($4 / 1e6), $3 / 1e6 / ($4 / 1e6), $6, $7, $5, ticks / hz * 1e6 / $2
	}' "$work/wrk.out" >>"$work/$name.$w"
	printf '%-7s %-8s %s\n' "$w" "$name" "$(tail -1 "$work/$name.$w")" >&2
}

workloads=$WORKLOADS
log "hits ($workloads): wrk -t2 -c$HIT_CONNS (-c4 for big) --latency, ${HIT_SECONDS}s per run, alternating, median of $ROUNDS"
echo "        server   req/s MB/s p50ms p99ms errors cpu-us/req" >&2
for _ in $(seq 1 "$ROUNDS"); do
	for w in $workloads; do
		wrk_run "$w" "$p_hit" mirrord "$hit_pid"
		nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ') # a worker that died is replaced
		# shellcheck disable=SC2086 # one argument per worker
		wrk_run "$w" "$p_nginx" nginx $nginx_workers
	done
done
# median FILE: the median of each column of the runs in FILE, but the
# errors column (5), which is their sum.
median() {
	local c
	for c in 1 2 3 4 5 6; do
		sort -k"$c,$c" -g "$work/$1" | awk -v c=$c '{ v[NR] = $c; sum += $c }
		END { if (c == 5) print sum; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
	done | paste -sd' '
}

# --- summary functions ----------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
j() { jq -r "$2" "$work/$1"; }
mem() { awk -v n="$1" '$1 == n { print $2 }' "$work/mem.txt"; }
memrow() { # name label
	printf '   %-22s %8s MB   %s\n' "$2" "$(mem "$1")" \
		"$(j "$1.mem.json" '"\(.requests) complete, \(.incomplete) cut off, \(.errors) errors"') (limit $(awk -v n="$1" '$1 == n { print $3 }' "$work/mem.txt"))"
}
hitrow() { # workload label
	[[ -s $work/mirrord.$1 ]] || return 0 # not in WORKLOADS
	local m_rps m_mbs m_p50 m_p99 m_err m_cpu n_rps n_mbs n_p50 n_p99 n_err n_cpu
	read -r m_rps m_mbs m_p50 m_p99 m_err m_cpu < <(median "mirrord.$1")
	read -r n_rps n_mbs n_p50 n_p99 n_err n_cpu < <(median "nginx.$1")
	printf '   %-22s %9.0f %9.0f %6s   %7.2f %7.2f %6s   %6.1f %6.1f   %s/%s\n' "$2" "$m_rps" "$n_rps" "$(ratio "$m_rps" "$n_rps")" \
		"$m_p99" "$n_p99" "$(ratio "$m_p99" "$n_p99")" "$m_cpu" "$n_cpu" "$m_err" "$n_err"
}

hit_summary() {
	cat <<EOF

bench-proxy: $(nproc) cores, $(date -u +%Y-%m-%d), HIT_SECONDS=$HIT_SECONDS, ROUNDS=$ROUNDS, server.fast_path=$FAST_PATH, log.access=$ACCESS_LOG, PIN=$PIN, NGINX_REUSEPORT=$NGINX_REUSEPORT${MIRRORD_BIN:+, MIRRORD_BIN=$MIRRORD_BIN}

1. hits (median of $ROUNDS)       req/s               ratio  p99 ms            ratio  CPU us/req     errors
                            mirrord     nginx  >= 1.0  mirrord   nginx  <= 1.5  mirrord  nginx  m/n
$(hitrow tinydb "db 2.6 KB")
$(hitrow db "core.db 128 KiB")
$(hitrow db304 "core.db, 304 (IMS)")
$(hitrow pkg "package 33 KiB x 200")
$(hitrow big "package 100 MiB, -c4")
$(if [[ -s $work/mirrord.big ]]; then echo "   100 MiB, MB/s: mirrord $(median mirrord.big | awk '{ print $2 }'), nginx $(median nginx.big | awk '{ print $2 }')"; fi)
EOF
}
if [[ $HITS_ONLY == 1 ]]; then
	hit_summary
	exit 0
fi

# --- 2. cold coalescing ---------------------------------------------------
log "cold coalescing: 50 clients, one 100 MB file, upstream at 20 MB/s"
start_mirrord "$p_cold" "$p_slow" cold
cold_pid=$mirrord_pid
wait_http "http://127.0.0.1:$p_cold/readyz"
kill "$hit_pid" # its work is done; leave the cores to the rest
cold_run() { # port name
	curl -sf -X POST "http://127.0.0.1:$p_slow/_reset"
	"$load" get --url "http://127.0.0.1:$1$path/cold-1.0-1-x86_64.pkg.tar.zst" --clients 50 --requests 50 \
		--upstream-stats "http://127.0.0.1:$p_slow/_count" --json >"$work/$2.cold.json"
	jq -c '{requests, errors, upstream: .upstream.requests, transfer_ms: .upstream.transfer_ms,
		ttfb_ms, completion_ms, lag_ms: .upstream.first_byte_lag_max_ms}' "$work/$2.cold.json" >&2
}
vmhwm_reset "$cold_pid"
cold_run "$p_cold" mirrord
cold_rss=$(vmhwm "$cold_pid")
cold_run "$p_ncache" nginx

# --- 3. memory ------------------------------------------------------------
log "memory: 500 clients, cold then hot, 20 MB and 100 MB"
# Each run gets a mirrord of its own on one data dir, so that its peak is
# its own and not the heap an earlier run left; the hot runs find the files
# the cold runs cached.
kill "$cold_pid"
wait "$cold_pid" 2>/dev/null || true
mem_run() { # file seconds name
	start_mirrord "$p_cold" "$p_slow" mem
	wait_http "http://127.0.0.1:$p_cold/readyz"
	"$load" get --url "http://127.0.0.1:$p_cold$path/$1" --clients 500 --requests 500 --duration "$2" \
		--json >"$work/$3.mem.json"
	printf '%s %s %s\n' "$3" "$(vmhwm "$mirrord_pid")" "$2" >>"$work/mem.txt"
	printf '%s peak RSS %s MB, %s\n' "$3" "$(vmhwm "$mirrord_pid")" \
		"$(jq -c '{requests, incomplete, errors, mb_per_sec}' "$work/$3.mem.json")" >&2
	kill "$mirrord_pid"
	wait "$mirrord_pid" 2>/dev/null || true
}
mem_run mem20-1.0-1-x86_64.pkg.tar.zst 20s cold20
mem_run mem100-1.0-1-x86_64.pkg.tar.zst 30s cold100
mem_run mem20-1.0-1-x86_64.pkg.tar.zst 20s hot20
mem_run mem100-1.0-1-x86_64.pkg.tar.zst 30s hot100

# --- summary --------------------------------------------------------------
hit_summary
cat <<EOF

2. cold coalescing, 50 clients, 100 MB at 20 MB/s
                                  mirrord        nginx   goal (mirrord)
   upstream requests         $(printf '%10s   %10s' "$(j mirrord.cold.json .upstream.requests)" "$(j nginx.cold.json .upstream.requests)")   1
   upstream transfer ms      $(printf '%10.0f   %10.0f' "$(j mirrord.cold.json .upstream.transfer_ms)" "$(j nginx.cold.json .upstream.transfer_ms)")
   client errors             $(printf '%10s   %10s' "$(j mirrord.cold.json .errors)" "$(j nginx.cold.json .errors)")
   ttfb ms min/med/max       $(printf '%s   %s' "$(j mirrord.cold.json '[.ttfb_ms.min,.ttfb_ms.median,.ttfb_ms.max] | map(. * 10 | round / 10) | join("/")')" "$(j nginx.cold.json '[.ttfb_ms.min,.ttfb_ms.median,.ttfb_ms.max] | map(round) | join("/")')")
   last first byte after
     upstream's, ms          $(printf '%10.1f   %10.1f' "$(j mirrord.cold.json .upstream.first_byte_lag_max_ms)" "$(j nginx.cold.json .upstream.first_byte_lag_max_ms)")   <= 100
   completion ms min/med/max $(printf '%s   %s' "$(j mirrord.cold.json '[.completion_ms.min,.completion_ms.median,.completion_ms.max] | map(round) | join("/")')" "$(j nginx.cold.json '[.completion_ms.min,.completion_ms.median,.completion_ms.max] | map(round) | join("/")')")
   slowest completion /
     upstream transfer       $(printf '%10.3f   %10.3f' "$(j mirrord.cold.json .upstream.completion_max_ratio)" "$(j nginx.cold.json .upstream.completion_max_ratio)")   <= 1.10
   mirrord peak RSS          $(printf '%10s MB' "$cold_rss")

3. memory, mirrord peak RSS (VmHWM), 500 clients, a fresh process each   goal: < 150 MB, flat in size
$(memrow cold20 "cold 20 MB")
$(memrow cold100 "cold 100 MB")
$(memrow hot20 "hot 20 MB")
$(memrow hot100 "hot 100 MB")
EOF
