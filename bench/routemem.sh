#!/usr/bin/env bash
# Memory per host route: shoal lb against HAProxy with a map, in the same run.
#
#   bench/routemem.sh                   # N=10000 host routes, each to one pool
#   N=50000 TOUCH=1 bench/routemem.sh    # also after one request to every host
#   SHOAL_BIN=/tmp/shoal-old bench/routemem.sh   # a shoal built elsewhere
#
# Each front end is started twice, with 1 host route and with N, in front of the
# same bench/backend; the figure is (RSS with N - RSS with 1) / (N - 1), RSS read
# from /proc/PID/status once both answer a request for their first and last host
# and the RSS is steady.
# shoal lb: one route per host in lb.yaml (an exact host, one pool). HAProxy: the
# usual way to route many hosts, a map file from host to backend
# (use_backend %[req.hdr(host),lower,map(FILE)]). With TOUCH=1 every host gets
# one request (8 curls at a time) and RSS is read again: shoal lb keeps the
# Prometheus series of each route that has served (request counts by code,
# latency and RTT histograms), which HAProxy's map has no equivalent of.
set -euo pipefail

N=${N:-10000}
TOUCH=${TOUCH:-0}
BASE_PORT=${BASE_PORT:-18380}
cd "$(dirname "$0")/.."
for t in go haproxy curl; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench/routemem.sh: $t not found (Debian: apt-get install haproxy curl)" >&2; exit 2; }
done

. bench/lib.sh # from the repository root (the cd above)
bench_start routemem

if [ -n "${SHOAL_BIN:-}" ]; then
	cp "$SHOAL_BIN" "$TMP/shoal" # a shoal built elsewhere, e.g. an older commit
else
	go build -o "$TMP/shoal" ./cmd/shoal
fi
go build -o "$TMP/backend" ./bench/backend
"$TMP/backend" -name b1 >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
BE=$(wait_line "$TMP/backend.log" 'listening addr=([0-9.:]+)')

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# steady_rss PID: RSS once it changed by under 1% over 2 s (at most 30 s): Go
# gives memory back to the system in the background after a large load.
steady_rss() {
	local prev cur
	prev=$(rss_kb "$1")
	for _ in $(seq 15); do
		sleep 2
		cur=$(rss_kb "$1")
		if awk -v a="$prev" -v b="$cur" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d * 100 < a)}'; then
			echo "$cur"
			return
		fi
		prev=$cur
	done
	echo "$cur"
}

# answers PORT HOST: wait up to 20 s for a 200 through the front end.
answers() {
	for _ in $(seq 400); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $2" "http://127.0.0.1:$1/")" = 200 ] && return 0
		sleep 0.05
	done
	echo "bench/routemem.sh: nothing answered for $2 on port $1" >&2
	exit 1
}

touch_all() { # PORT COUNT
	seq 0 $(($2 - 1)) | xargs -P 8 -I{} curl -s -o /dev/null -H "Host: h{}.example.com" "http://127.0.0.1:$1/"
}

start_shoal() { # COUNT PORT -> pid in STARTED
	local dir="$TMP/shoal-$1"
	mkdir -p "$dir"
	{
		printf 'listeners:\n  - name: web\n    listen: 127.0.0.1:%s\nroutes:\n' "$2"
		seq 0 $(($1 - 1)) | awk '{printf "  - {name: r%d, host: h%d.example.com, pool: be}\n", $1, $1}'
		printf 'pools:\n  - name: be\n    targets:\n      - addr: %s\n' "$BE"
	} >"$dir/lb.yaml"
	"$TMP/shoal" lb -c "$dir/lb.yaml" -log-level warn >"$dir/log" 2>&1 &
	STARTED=$!
	PIDS+=($STARTED)
}

start_haproxy() { # COUNT PORT -> pid in STARTED
	local dir="$TMP/haproxy-$1"
	mkdir -p "$dir"
	seq 0 $(($1 - 1)) | awk '{printf "h%d.example.com be\n", $1}' >"$dir/hosts.map"
	cat >"$dir/haproxy.cfg" <<CFG
global
    nbthread 2
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$2
    use_backend %[req.hdr(host),lower,map($dir/hosts.map)]
backend be
    server b1 $BE
CFG
	haproxy -f "$dir/haproxy.cfg" -db >"$dir/log" 2>&1 &
	STARTED=$!
	PIDS+=($STARTED)
}

declare -A RSS
port=$BASE_PORT
for fe in shoal haproxy; do
	for count in 1 "$N"; do
		port=$((port + 1))
		"start_$fe" "$count" "$port"
		pid=$STARTED
		answers "$port" h0.example.com
		answers "$port" "h$((count - 1)).example.com"
		RSS[$fe,$count]=$(steady_rss "$pid")
		if [ "$TOUCH" = 1 ] && [ "$count" != 1 ]; then
			touch_all "$port" "$count"
			RSS[$fe,$count,touched]=$(steady_rss "$pid")
		fi
	done
done

per_route() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN {printf "%.0f", (b - a) * 1024 / (n - 1)}'; }
echo "memory per host route, $N routes ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)," \
	"HAProxy $(haproxy -v | awk 'NR==1 {print $3}'))"
echo "| front end | RSS, 1 route | RSS, $N routes | bytes per route | vs HAProxy |"
echo "| --- | ---: | ---: | ---: | ---: |"
h=$(per_route "${RSS[haproxy,1]}" "${RSS[haproxy,$N]}")
for fe in shoal haproxy; do
	p=$(per_route "${RSS[$fe,1]}" "${RSS[$fe,$N]}")
	echo "| $fe | ${RSS[$fe,1]} KiB | ${RSS[$fe,$N]} KiB | $p | $(awk -v p="$p" -v h="$h" 'BEGIN {printf "%.2fx", p / h}') |"
done
if [ "$TOUCH" = 1 ]; then
	ht=$(per_route "${RSS[haproxy,1]}" "${RSS[haproxy,$N,touched]}")
	for fe in shoal haproxy; do
		p=$(per_route "${RSS[$fe,1]}" "${RSS[$fe,$N,touched]}")
		echo "| $fe, every host served once | ${RSS[$fe,1]} KiB | ${RSS[$fe,$N,touched]} KiB | $p | $(awk -v p="$p" -v h="$ht" 'BEGIN {printf "%.2fx", p / h}') |"
	done
fi
