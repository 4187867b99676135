#!/usr/bin/env bash
# The cost of the balancing algorithm as the pool grows: shoal lb's
# round_robin and least_requests against HAProxy's roundrobin and
# leastconn, at 1 and 1,000 servers, side by side in one run.
#
#   bench/lbalgo.sh                     # 3 interleaved rounds of 10s each
#   ROUNDS=5 DURATION=20s SERVERS="1 100 1000" bench/lbalgo.sh
#   SHOAL_BIN=/tmp/shoal-old bench/lbalgo.sh   # measure a shoal built elsewhere
#
# One bench/backend process listens on as many 127.0.0.1 ports as the
# largest pool has servers; every pool of N servers uses the first N. Each
# (proxy, algorithm, N) runs as its own process on its own port, all
# started before the first round, and wrk drives them in interleaved
# rounds. The number that matters is requests per CPU-second of the proxy
# process (from /proc/<pid>/stat, as bench/lb.sh does): how much work one
# request costs, whatever else shares the cores.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SERVERS=${SERVERS:-1 1000}
BASE_PORT=${BASE_PORT:-18180}
cd "$(dirname "$0")/.."

for t in go haproxy wrk curl; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "bench/lbalgo.sh: $t not found. On Debian/Ubuntu: sudo apt-get install -y haproxy wrk curl (and Go)" >&2
		exit 2
	}
done

. bench/lib.sh # from the repository root (the cd above)
bench_start lbalgo

echo "building shoal, backend ..." >&2
if [ -n "${SHOAL_BIN:-}" ]; then
	cp "$SHOAL_BIN" "$TMP/shoal"
else
	go build -o "$TMP/shoal" ./cmd/shoal
fi
go build -o "$TMP/backend" ./bench/backend

maxn=0
for n in $SERVERS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
"$TMP/backend" -name b -listeners "$maxn" >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
wait_line "$TMP/backend.log" 'listening addr=([0-9.:]+)' >/dev/null
for _ in $(seq 200); do
	[ "$(grep -c '^listening addr=' "$TMP/backend.log")" -ge "$maxn" ] && break
	sleep 0.05
done
mapfile -t ADDRS < <(sed -nE 's/^listening addr=([0-9.:]+)$/\1/p' "$TMP/backend.log")
[ "${#ADDRS[@]}" -ge "$maxn" ] || { echo "bench/lbalgo.sh: backend bound ${#ADDRS[@]} of $maxn ports" >&2; exit 1; }

NAMES=()
declare -A PORT PID
port=$BASE_PORT
start() { # start NAME: PORT[NAME] and PID[NAME] set, NAMES appended
	NAMES+=("$1")
	PID[$1]=$!
	PIDS+=($!)
}
for n in $SERVERS; do
	for algo in round_robin least_requests; do
		name="shoal-$algo-$n"
		mkdir "$TMP/$name" # its own directory: the admin socket is made next to lb.yaml
		{
			cat <<EOF
listeners:
  - name: web
    listen: 127.0.0.1:$port
routes:
  - name: all
    pool: be
pools:
  - name: be
    algorithm: $algo
    targets:
EOF
			for a in "${ADDRS[@]:0:$n}"; do echo "      - addr: $a"; done
		} >"$TMP/$name/lb.yaml"
		"$TMP/shoal" lb -c "$TMP/$name/lb.yaml" -log-level warn >"$TMP/$name.log" 2>&1 &
		PORT[$name]=$port
		start "$name"
		port=$((port + 1))

		hname="haproxy-$algo-$n"
		balance=roundrobin
		[ "$algo" = least_requests ] && balance=leastconn
		{
			cat <<EOF
global
    nbthread 2
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    balance $balance
EOF
			i=0
			for a in "${ADDRS[@]:0:$n}"; do i=$((i + 1)); echo "    server s$i $a"; done
		} >"$TMP/$hname.cfg"
		haproxy -f "$TMP/$hname.cfg" -db >"$TMP/$hname.log" 2>&1 &
		PORT[$hname]=$port
		start "$hname"
		port=$((port + 1))
	done
done

for name in "${NAMES[@]}"; do
	ok=
	for _ in $(seq 200); do
		if curl -fs -o /dev/null "http://127.0.0.1:${PORT[$name]}/"; then ok=1; break; fi
		sleep 0.05
	done
	[ -n "$ok" ] || { echo "bench/lbalgo.sh: $name does not answer" >&2; cat "$TMP/$name.log" >&2; exit 1; }
done

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/${PID[$1]}/stat"; }
HZ=$(getconf CLK_TCK)
RESULTS="$TMP/results"
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
	for name in "${NAMES[@]}"; do
		c0=$(cpu_ticks "$name")
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$name]}/")
		c1=$(cpu_ticks "$name")
		rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
		reqs=$(echo "$out" | awk '/requests in/ {print $1}')
		rpc=$(awk -v r="$reqs" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (t > 0) printf "%.0f", r / (t / hz); else print 0 }')
		errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
		echo "$name $rps $rpc" >>"$RESULTS"
		echo "round $r $name: $rps req/s, $rpc req per proxy CPU-second $errs" >&2
	done
done

median() { # median NAME COLUMN
	awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\nmedian of %s rounds of %s, wrk -t%s -c%s; %s cores\n\n' "$ROUNDS" "$DURATION" "$THREADS" "$CONNS" "$(nproc)"
echo "| proxy | algorithm | servers | req/s | req per CPU-s | CPU per req vs its round robin | CPU per req vs its own at ${SERVERS%% *} servers |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
first=${SERVERS%% *}
for proxy in shoal haproxy; do
	for n in $SERVERS; do
		for algo in round_robin least_requests; do
			name="$proxy-$algo-$n"
			rps=$(median "$name" 2) rpc=$(median "$name" 3)
			rr=$(median "$proxy-round_robin-$n" 3) one=$(median "$proxy-$algo-$first" 3)
			printf '| %s | %s | %s | %.0f | %.0f | %s | %s |\n' "$proxy" "$algo" "$n" "$rps" "$rpc" "$(ratio "$rr" "$rpc")" "$(ratio "$one" "$rpc")"
		done
	done
done
