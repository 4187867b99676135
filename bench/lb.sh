#!/usr/bin/env bash
# Benchmark shoal lb against HAProxy and nginx on this machine.
#
#   bench/lb.sh                 # 3 interleaved rounds of 10s per proxy
#   ROUNDS=5 DURATION=20s bench/lb.sh
#   KINDS=ws ROUNDS=1 DURATION=5s bench/lb.sh   # WebSocket part only
#   SHOAL_BASE=/tmp/shoal-old bench/lb.sh       # also an older shoal binary (A/B)
#   SHOAL_BASE=$PWD/bin/shoal BASE_YAML='limits: {loops: 1}' bench/lb.sh  # A/B a setting
#
# Two backends (bench/backend: ~100-byte answers, WebSocket echo on /ws)
# run behind each proxy, all on 127.0.0.1. Each proxy gets comparable
# settings: 2 workers/threads, keep-alive to the backends, round robin, no
# health checks, no access log. wrk (HTTP) and bench/wsload (WebSocket
# echo) drive them in interleaved rounds (shoal, haproxy, nginx, shoal, ...)
# so that drift in the machine's load hits every proxy alike. The table
# shows the median of the rounds and the ratio to HAProxy.
#
# Everything shares the machine's cores: load generator, proxies and
# backends. Numbers compare proxies on one box; they are not capacity.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WS_CONNS=${WS_CONNS:-64}
KINDS=${KINDS:-idle http close ws} # parts: idle (memory of idle connections), http (keep-alive), close (a new connection per request), ws
IDLE_CONNS=${IDLE_CONNS:-3000}
SHOAL_BASE=${SHOAL_BASE:-} # an older shoal binary to interleave as "base"
BASE_YAML=${BASE_YAML:-}   # extra lb.yaml lines for "base", e.g. 'limits: {loops: 1}'
BASE_PORT=${BASE_PORT:-18080}
cd "$(dirname "$0")/.."

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "bench/lb.sh: $1 not found. On Debian/Ubuntu: sudo apt-get install -y haproxy nginx-light wrk (and Go for the rest)" >&2
		exit 2
	fi
}
for t in go haproxy nginx wrk; do need "$t"; done

TMP=$(mktemp -d -t shoal-bench-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
SHOAL_PORT=$BASE_PORT HAPROXY_PORT=$((BASE_PORT + 1)) NGINX_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 9))
BASE_SHOAL_PORT=$((BASE_PORT + 3)) BASE_ADMIN_PORT=$((BASE_PORT + 8))
for p in $SHOAL_PORT $HAPROXY_PORT $NGINX_PORT $ADMIN_PORT $BASE_SHOAL_PORT $BASE_ADMIN_PORT; do
	port_free "$p" || { echo "bench/lb.sh: port $p is in use (set BASE_PORT)" >&2; exit 2; }
done

echo "building shoal, backend, wsload ..." >&2
go build -o "$TMP/shoal" ./cmd/shoal
go build -o "$TMP/backend" ./bench/backend
go build -o "$TMP/wsload" ./bench/wsload
go build -o "$TMP/idleconns" ./bench/idleconns

. bench/lib.sh # from the repository root (the cd above)
start_backends
B1=${BACKENDS[0]} B2=${BACKENDS[1]}
echo "backends: $B1 $B2" >&2

# --- shoal ---
cat >"$TMP/lb.yaml" <<EOF
listeners:
  - name: web
    listen: 127.0.0.1:$SHOAL_PORT
routes:
  - name: all
    pool: be
pools:
  - name: be
    algorithm: round_robin
    targets:
      - addr: $B1
      - addr: $B2
admin:
  listen: 127.0.0.1:$ADMIN_PORT
EOF
"$TMP/shoal" lb -c "$TMP/lb.yaml" -log-level warn >"$TMP/shoal.log" 2>&1 &
PIDS+=($!)
SHOAL_PID=$!
if [ -n "$SHOAL_BASE" ]; then
	# The base binary may predate the "listen" key (it read "addr", which
	# newer binaries still accept, with a warning): write the old name.
	sed -e "s/:$SHOAL_PORT\$/:$BASE_SHOAL_PORT/" -e "s/:$ADMIN_PORT\$/:$BASE_ADMIN_PORT/" \
		-e 's/^\( *\)listen: /\1addr: /' "$TMP/lb.yaml" >"$TMP/lb-base.yaml"
	[ -n "$BASE_YAML" ] && printf '%s\n' "$BASE_YAML" >>"$TMP/lb-base.yaml"
	"$SHOAL_BASE" lb -c "$TMP/lb-base.yaml" -log-level warn >"$TMP/shoal-base.log" 2>&1 &
	PIDS+=($!)
	BASE_PID=$!
fi

# --- haproxy ---
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    balance roundrobin
    server b1 $B1
    server b2 $B2
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

# --- nginx ---
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    upstream be {
        server $B1;
        server $B2;
        keepalive 64;
    }
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
    }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!

# Wait until every proxy answers.
for port in $SHOAL_PORT $HAPROXY_PORT $NGINX_PORT ${SHOAL_BASE:+$BASE_SHOAL_PORT}; do
	ok=
	for _ in $(seq 200); do
		if curl -fs -o /dev/null "http://127.0.0.1:$port/"; then ok=1; break; fi
		sleep 0.05
	done
	if [ -z "$ok" ]; then
		echo "bench/lb.sh: proxy on port $port does not answer" >&2
		cat "$TMP"/*.log "$TMP/nginx/logs/error.log" >&2 || true
		exit 1
	fi
done

NAMES=(shoal haproxy nginx)
declare -A PORT=([shoal]=$SHOAL_PORT [haproxy]=$HAPROXY_PORT [nginx]=$NGINX_PORT [base]=$BASE_SHOAL_PORT)
declare -A PID=([shoal]=$SHOAL_PID [haproxy]=$HAPROXY_PID [nginx]=$NGINX_PID [base]=${BASE_PID:-})

# cpu_ticks NAME: CPU time (user + system, in clock ticks) used so far by
# the proxy's process and its children (nginx's workers).
cpu_ticks() {
	local p=${PID[$1]} total=0 t
	for q in $p $(pgrep -P "$p" || true); do
		t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$q/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	echo "$total"
}
HZ=$(getconf CLK_TCK)
[ -n "$SHOAL_BASE" ] && NAMES+=(base)

# to_ms VALUE: wrk prints 812.00us, 1.23ms or 1.02s.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else { printf "%s", v } }'
}

RESULTS="$TMP/results"
: >"$RESULTS"
IDLE_OUT="$TMP/idle"
: >"$IDLE_OUT"
# Memory of idle keep-alive connections, first, while every proxy is fresh.
if [[ " $KINDS " == *" idle "* ]]; then
	for n in "${NAMES[@]}"; do
		p=${PID[$n]}
		out=$("$TMP/idleconns" -addr "127.0.0.1:${PORT[$n]}" -n "$IDLE_CONNS" -pids "$(echo $p $(pgrep -P "$p" || true) | tr ' ' ',')")
		echo "idle $n: $out" >&2
		echo "$n $(echo "$out" | sed -E 's/.*per_conn_bytes=([0-9-]+).*/\1/')" >>"$IDLE_OUT"
	done
fi
for r in $(seq "$ROUNDS"); do
	for kind in http close; do
	[[ " $KINDS " == *" $kind "* ]] || continue
	hdr=()
	[ "$kind" = close ] && hdr=(-H "Connection: close")
	for n in "${NAMES[@]}"; do
		c0=$(cpu_ticks "$n")
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$n]}/")
		c1=$(cpu_ticks "$n")
		rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
		reqs=$(echo "$out" | awk '/requests in/ {print $1}')
		# Requests per second of the proxy's own CPU time: its efficiency,
		# much steadier than the rate when other work shares the cores.
		rpc=$(awk -v r="$reqs" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (t > 0) printf "%.0f", r / (t / hz); else print 0 }')
		p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
		p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
		errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
		echo "$kind $n $rps $p50 $p99 $rpc" >>"$RESULTS"
		echo "round $r $kind $n: $rps req/s p50 ${p50}ms p99 ${p99}ms, $rpc req per proxy CPU-second $errs" >&2
	done
	done
done
for r in $(seq "$ROUNDS"); do
	[[ " $KINDS " == *" ws "* ]] || break
	for n in "${NAMES[@]}"; do
		c0=$(cpu_ticks "$n")
		out=$("$TMP/wsload" -url "ws://127.0.0.1:${PORT[$n]}/ws" -c "$WS_CONNS" -d "$DURATION")
		c1=$(cpu_ticks "$n")
		mps=$(echo "$out" | sed -E 's/.*msgs_per_sec=([0-9.]+).*/\1/')
		p50=$(echo "$out" | sed -E 's/.*p50_ms=([0-9.]+).*/\1/')
		p99=$(echo "$out" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/')
		msgs=$(echo "$out" | sed -E 's/.*msgs=([0-9]+).*/\1/')
		rpc=$(awk -v r="$msgs" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (t > 0) printf "%.0f", r / (t / hz); else print 0 }')
		echo "ws $n $mps $p50 $p99 $rpc" >>"$RESULTS"
		echo "round $r ws $n: $out" >&2
	done
done

# median KIND NAME COLUMN
median() {
	awk -v k="$1" -v n="$2" -v c="$3" '$1 == k && $2 == n {print $c}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "shoal lb vs HAProxy $(haproxy -v | awk 'NR==1 {print $3}') vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')," \
	"median of $ROUNDS rounds of $DURATION; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo
echo "| test | proxy | rate/s | p50 ms | p99 ms | per proxy CPU-s | rate vs HAProxy | p99 vs HAProxy | per CPU-s vs HAProxy |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for kind in $KINDS; do
	[ "$kind" = idle ] && continue
	hr=$(median "$kind" haproxy 3) h99=$(median "$kind" haproxy 5) hc=$(median "$kind" haproxy 6)
	for n in "${NAMES[@]}"; do
		rate=$(median "$kind" "$n" 3) p50=$(median "$kind" "$n" 4) p99=$(median "$kind" "$n" 5) cpu=$(median "$kind" "$n" 6)
		label="HTTP wrk -t$THREADS -c$CONNS"
		[ "$kind" = close ] && label="HTTP, new connection per request"
		[ "$kind" = ws ] && label="WebSocket echo, $WS_CONNS conns"
		printf "| %s | %s | %.0f | %.3f | %.3f | %.0f | %s | %s | %s |\n" "$label" "$n" "$rate" "$p50" "$p99" "$cpu" "$(ratio "$rate" "$hr")" "$(ratio "$p99" "$h99")" "$(ratio "$cpu" "$hc")"
	done
done
if [ -s "$IDLE_OUT" ]; then
	echo
	echo "Memory per idle keep-alive client connection ($IDLE_CONNS connections, one request each, resident memory before and after):"
	echo
	echo "| proxy | bytes per connection |"
	echo "| --- | ---: |"
	while read -r n b; do printf "| %s | %s |\n" "$n" "$b"; done <"$IDLE_OUT"
fi
