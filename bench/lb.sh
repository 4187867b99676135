#!/usr/bin/env bash
# Benchmark shoal lb against HAProxy and nginx on this machine.
#
#   bench/lb.sh                 # 3 interleaved rounds of 10s per proxy
#   ROUNDS=5 DURATION=20s bench/lb.sh
#   KINDS=ws ROUNDS=1 DURATION=5s bench/lb.sh   # WebSocket part only
#   SHOAL_BASE=/tmp/shoal-old bench/lb.sh       # also an older shoal binary (A/B)
#   SHOAL_BASE=$PWD/bin/shoal BASE_YAML='limits: {loops: 1}' bench/lb.sh  # A/B a setting
#   SHOAL_YAML='limits: {tls_fast_path: false}' bench/lb.sh  # extra lb.yaml lines for shoal
#   KINDS='h2tls h1tls tlsclose' bench/lb.sh    # the TLS part only
#   BACKEND_TLS=h2 KINDS='h2tls h1tls' bench/lb.sh  # HTTPS backends, HTTP/2 to them
#
# BACKEND_TLS=h2 or http1: the backends serve HTTPS (the proxies' own
# certificate) and every proxy reaches them over TLS, verified against
# it, with HTTP/2 (h2) or HTTP/1.1: shoal with the pool's tls section and
# protocol, HAProxy with "server ... ssl verify required ca-file ...
# alpn h2" (http1: no alpn), nginx with proxy_pass https and
# proxy_ssl_verify (HTTP/1.1 whatever the mode: nginx has no HTTP/2 to
# upstreams).
#
# Two backends (bench/backend: ~100-byte answers, WebSocket echo on /ws)
# run behind each proxy, all on 127.0.0.1. Each proxy gets comparable
# settings: 2 workers/threads, keep-alive to the backends, round robin, no
# health checks, no access log. wrk (HTTP) and bench/wsload (WebSocket
# echo) drive them in interleaved rounds (shoal, haproxy, nginx, shoal, ...)
# so that drift in the machine's load hits every proxy alike. The table
# shows the median of the rounds and the ratio to HAProxy.
#
# TLS: each proxy also has a TLS listener with the same ECDSA P-256
# certificate (made by the script with openssl) offering h2 and http/1.1
# through ALPN. h2load drives HTTP/2 (h2load -c CONNS -m STREAMS) and
# HTTP/1.1 keep-alive (h2load --h1 -c CONNS); wrk drives a new TLS
# connection per request (TLS 1.3; wrk keeps its session across its
# reconnections, so after the first these resume with a session ticket and
# a fresh X25519 exchange: no certificate signature, as a returning
# browser's). h2load warms up 1s (the handshakes) before it measures.
# Latency percentiles of the h2load modes come from its
# per-request log.
# nginx is told to speak TLS 1.2 and 1.3 (NGINX_PROTOCOLS; the default of
# nginx 1.23.4 and later): Debian's nginx 1.22 alone speaks up to TLS
# 1.2, whose resumption (an abbreviated handshake) makes no key exchange
# at all, so tlsclose would compare TLS 1.2 resumption with everyone
# else's TLS 1.3 one. NGINX_PROTOCOLS='TLSv1 TLSv1.1 TLSv1.2' measures
# nginx 1.22's default. Before the rounds, the script prints each TLS
# proxy's protocol, cipher, key exchange group and whether a second
# connection resumed (openssl s_client).
#
# With PIN=1 (the default on 2 or more cores) the proxies run on CPU 0 and
# the backends and load generators on CPU 1 (taskset), so that the load
# generator's work does not count against the proxy it drives.
#
# Everything shares the machine's cores: load generator, proxies and
# backends. Numbers compare proxies on one box; they are not capacity.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WS_CONNS=${WS_CONNS:-64}
STREAMS=${STREAMS:-10} # concurrent HTTP/2 streams per connection (h2tls)
KINDS=${KINDS:-idle idletls http close ws h2tls h1tls tlsclose} # parts: idle and idletls (memory of idle plain and TLS connections), http (keep-alive), close (a new connection per request), ws, h2tls (HTTP/2 over TLS), h1tls (HTTP/1.1 over TLS, keep-alive), tlsclose (a new TLS connection per request)
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
IDLE_CONNS=${IDLE_CONNS:-3000}
IDLE_AFTER=${IDLE_AFTER:-0} # e.g. 30s: measure memory again this long after the idle connections close
SHOAL_BASE=${SHOAL_BASE:-} # an older shoal binary to interleave as "base"
BASE_YAML=${BASE_YAML:-}   # extra lb.yaml lines for "base", e.g. 'limits: {loops: 1}'
SHOAL_YAML=${SHOAL_YAML:-} # extra lb.yaml lines for shoal
BASE_PORT=${BASE_PORT:-18080}
BACKEND_TLS=${BACKEND_TLS:-} # h2 or http1: HTTPS backends (see above)
NGINX_PROTOCOLS=${NGINX_PROTOCOLS:-TLSv1.2 TLSv1.3} # nginx's ssl_protocols (see above)
case $BACKEND_TLS in '' | h2 | http1) ;; *) echo "bench/lb.sh: BACKEND_TLS=$BACKEND_TLS: want h2 or http1" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "bench/lb.sh: $1 not found. On Debian/Ubuntu: sudo apt-get install -y haproxy nginx-light wrk (and Go for the rest)" >&2
		exit 2
	fi
}
for t in go haproxy nginx wrk; do need "$t"; done
if [[ " $KINDS " == *tls* || -n $BACKEND_TLS ]]; then
	need openssl
	command -v h2load >/dev/null 2>&1 || { echo "bench/lb.sh: h2load not found. On Debian/Ubuntu: sudo apt-get install -y nghttp2-client" >&2; exit 2; }
fi
# Pinning: proxies on CPU 0, backends and load generators on CPU 1.
PROXY_CPU=() LOAD_CPU=()
if [ "$PIN" = 1 ]; then
	need taskset
	PROXY_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi

. bench/lib.sh # from the repository root (the cd above)
bench_start bench

SHOAL_PORT=$BASE_PORT HAPROXY_PORT=$((BASE_PORT + 1)) NGINX_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 9))
BASE_SHOAL_PORT=$((BASE_PORT + 3)) BASE_ADMIN_PORT=$((BASE_PORT + 8))
SHOAL_TLS_PORT=$((BASE_PORT + 4)) HAPROXY_TLS_PORT=$((BASE_PORT + 5)) NGINX_TLS_PORT=$((BASE_PORT + 6)) BASE_TLS_PORT=$((BASE_PORT + 7))
ports_free bench/lb.sh $SHOAL_PORT $HAPROXY_PORT $NGINX_PORT $ADMIN_PORT $BASE_SHOAL_PORT $BASE_ADMIN_PORT \
	$SHOAL_TLS_PORT $HAPROXY_TLS_PORT $NGINX_TLS_PORT $BASE_TLS_PORT

echo "building shoal, backend, wsload ..." >&2
go build -o "$TMP/shoal" ./cmd/shoal
go build -o "$TMP/backend" ./bench/backend
go build -o "$TMP/wsload" ./bench/wsload
go build -o "$TMP/idleconns" ./bench/idleconns

# One ECDSA P-256 certificate for every proxy's TLS listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"

BACKEND_ARGS=() SHOAL_POOL_TLS='' HAPROXY_SERVER='' NGINX_UPSTREAM=http NGINX_SSL=''
if [ -n "$BACKEND_TLS" ]; then
	BACKEND_ARGS=(-tls-cert "$TMP/cert.pem" -tls-key "$TMP/key.pem")
	SHOAL_POOL_TLS="    protocol: $BACKEND_TLS
    tls: {ca_file: $TMP/cert.pem}"
	HAPROXY_SERVER="ssl verify required ca-file $TMP/cert.pem"
	[ "$BACKEND_TLS" = h2 ] && HAPROXY_SERVER+=" alpn h2"
	NGINX_UPSTREAM=https
	NGINX_SSL="proxy_ssl_verify on; proxy_ssl_trusted_certificate $TMP/cert.pem; proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
fi
start_backends
B1=${BACKENDS[0]} B2=${BACKENDS[1]}
echo "backends: $B1 $B2${BACKEND_TLS:+ (HTTPS, $BACKEND_TLS)}" >&2

# --- shoal ---
cat >"$TMP/lb-core.yaml" <<EOF
listeners:
  - name: web
    listen: 127.0.0.1:$SHOAL_PORT
  - name: webtls
    listen: 127.0.0.1:$SHOAL_TLS_PORT
    tls:
      - {cert: $TMP/cert.pem, key: $TMP/key.pem}
routes:
  - name: all
    pool: be
pools:
  - name: be
    algorithm: round_robin
    targets:
      - addr: $B1
      - addr: $B2
$SHOAL_POOL_TLS
admin:
  listen: 127.0.0.1:$ADMIN_PORT
EOF
cp "$TMP/lb-core.yaml" "$TMP/lb.yaml"
[ -n "$SHOAL_YAML" ] && printf '%s\n' "$SHOAL_YAML" >>"$TMP/lb.yaml"
"${PROXY_CPU[@]}" "$TMP/shoal" lb -c "$TMP/lb.yaml" -log-level warn >"$TMP/shoal.log" 2>&1 &
PIDS+=($!)
SHOAL_PID=$!
if [ -n "$SHOAL_BASE" ]; then
	# The base binary may predate the "listen" key (it read "addr", which
	# newer binaries still accept, with a warning): write the old name.
	# Its own directory: a shoal lb started next to another's lb.yaml takes
	# over that one's sockets (.shoal/handoff.sock).
	mkdir "$TMP/base"
	sed -e "s/:$SHOAL_PORT\$/:$BASE_SHOAL_PORT/" -e "s/:$SHOAL_TLS_PORT\$/:$BASE_TLS_PORT/" -e "s/:$ADMIN_PORT\$/:$BASE_ADMIN_PORT/" \
		-e 's/^\( *\)listen: /\1addr: /' "$TMP/lb-core.yaml" >"$TMP/base/lb.yaml"
	[ -n "$BASE_YAML" ] && printf '%s\n' "$BASE_YAML" >>"$TMP/base/lb.yaml"
	"${PROXY_CPU[@]}" "$SHOAL_BASE" lb -c "$TMP/base/lb.yaml" -log-level warn >"$TMP/shoal-base.log" 2>&1 &
	PIDS+=($!)
	BASE_PID=$!
fi

# Room for the idle connections' test and the load, in HAProxy and in
# each nginx worker.
MAXCONN=$((IDLE_CONNS + 512 > 8192 ? IDLE_CONNS + 512 : 8192))
# --- haproxy ---
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn $MAXCONN
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
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $TMP/haproxy.pem alpn h2,http/1.1
    default_backend be
backend be
    balance roundrobin
    server b1 $B1 $HAPROXY_SERVER
    server b2 $B2 $HAPROXY_SERVER
EOF
"${PROXY_CPU[@]}" haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

# --- nginx ---
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections $MAXCONN; }
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
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_protocols $NGINX_PROTOCOLS;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        location / {
            proxy_pass $NGINX_UPSTREAM://be;
            $NGINX_SSL
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
    }
}
EOF
"${PROXY_CPU[@]}" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!

# Wait until every proxy answers.
for url in http://127.0.0.1:{$SHOAL_PORT,$HAPROXY_PORT,$NGINX_PORT}/ https://127.0.0.1:{$SHOAL_TLS_PORT,$HAPROXY_TLS_PORT,$NGINX_TLS_PORT}/ \
	${SHOAL_BASE:+http://127.0.0.1:$BASE_SHOAL_PORT/ https://127.0.0.1:$BASE_TLS_PORT/}; do
	ok=
	for _ in $(seq 600); do # 30s: a loaded machine starts a proxy slowly
		if curl -fsk -o /dev/null "$url"; then ok=1; break; fi
		sleep 0.05
	done
	if [ -z "$ok" ]; then
		echo "bench/lb.sh: proxy at $url does not answer" >&2
		cat "$TMP"/*.log "$TMP/nginx/logs/error.log" >&2 || true
		exit 1
	fi
done

NAMES=(shoal haproxy nginx)
declare -A PORT=([shoal]=$SHOAL_PORT [haproxy]=$HAPROXY_PORT [nginx]=$NGINX_PORT [base]=$BASE_SHOAL_PORT)
declare -A TLS_PORT=([shoal]=$SHOAL_TLS_PORT [haproxy]=$HAPROXY_TLS_PORT [nginx]=$NGINX_TLS_PORT [base]=$BASE_TLS_PORT)
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
# What each TLS listener negotiates with an OpenSSL client (wrk's and
# h2load's library): a new session, then one resumed from its ticket.
if [[ " $KINDS " == *tls* ]]; then
	for n in "${NAMES[@]}"; do
		port=${TLS_PORT[$n]}
		# A request, and its answer read to the end: a TLS 1.3 server
		# may send its ticket after the handshake.
		req='GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'
		first=$(printf "$req" | timeout 10 openssl s_client -connect 127.0.0.1:$port -sess_out "$TMP/sess-$n" -ign_eof 2>&1 | grep -E '^New,|Temp Key' | sort | paste -sd' ' || true)
		again=$(printf "$req" | timeout 10 openssl s_client -connect 127.0.0.1:$port -sess_in "$TMP/sess-$n" -ign_eof 2>&1 | grep -E '^(New|Reused),' | cut -d, -f1 || true)
		echo "tls $n: $first; next connection: $again" >&2
	done
fi

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
# Memory of idle keep-alive connections, first, while every proxy is fresh:
# resident memory, and for shoal its Go heap in use (from its /metrics).
declare -A METRICS=([shoal]=http://127.0.0.1:$ADMIN_PORT/metrics [base]=http://127.0.0.1:$BASE_ADMIN_PORT/metrics)
declare -A TOKEN=([shoal]=$TMP/.shoal/admin.token [base]=$TMP/base/.shoal/admin.token)
for kind in idle idletls; do
	[[ " $KINDS " == *" $kind "* ]] || continue
	for n in "${NAMES[@]}"; do
		p=${PID[$n]} addr=127.0.0.1:${PORT[$n]} flags=()
		[ "$kind" = idletls ] && addr=127.0.0.1:${TLS_PORT[$n]} flags+=(-tls)
		[ -n "${METRICS[$n]:-}" ] && flags+=(-metrics "${METRICS[$n]}" -token-file "${TOKEN[$n]}")
		[ "$IDLE_AFTER" != 0 ] && flags+=(-after-close "$IDLE_AFTER")
		out=$(${LOAD_CPU[@]+"${LOAD_CPU[@]}"} "$TMP/idleconns" -addr "$addr" -n "$IDLE_CONNS" "${flags[@]}" -pids "$(echo $p $(pgrep -P "$p" || true) | tr ' ' ',')")
		echo "$kind $n: $out" >&2
		field() { echo "$out" | sed -nE "s/.* $1=([0-9-]+).*/\1/p" | grep . || echo -; }
		echo "$kind $n $(field per_conn_bytes) $(field heap_per_conn_bytes) $(field rss_after_kib) $(field rss_closed_kib)" >>"$IDLE_OUT"
	done
done
# percentiles FILE: p50 and p99 in ms of h2load's per-request log (its
# third column is the request's time in microseconds).
percentiles() {
	awk '{print $3}' "$1" | sort -n | awk '{a[NR] = $1} END {
		if (NR == 0) { print "0 0"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "%.3f %.3f\n", a[i50] / 1000, a[i99] / 1000 }'
}

# load KIND NAME: drive one proxy for DURATION; prints
# "rate p50_ms p99_ms requests errors".
load() {
	local kind=$1 n=$2 out hdr=() url="https://127.0.0.1:${TLS_PORT[$2]}/"
	case $kind in
	http | close | tlsclose)
		[ "$kind" = http ] || hdr=(-H "Connection: close")
		[ "$kind" = tlsclose ] || url="http://127.0.0.1:${PORT[$n]}/"
		out=$(${LOAD_CPU[@]+"${LOAD_CPU[@]}"} wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url")
		echo "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')" \
			"$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")" \
			"$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")" \
			"$(echo "$out" | awk '/requests in/ {print $1}')" \
			"$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr -d ' ,:' | tr '\n' ';')"
		;;
	h2tls | h1tls)
		local proto=(-m "$STREAMS")
		[ "$kind" = h1tls ] && proto=(--h1)
		out=$(${LOAD_CPU[@]+"${LOAD_CPU[@]}"} h2load "${proto[@]}" -c "$CONNS" -t "$THREADS" -D "${DURATION%s}" --warm-up-time 1 \
			--log-file "$TMP/h2load.log" "$url")
		# "finished in 10.00s, 12345.60 req/s, 1.23MB/s" and
		# "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
		echo "$(echo "$out" | awk '/^finished in/ {print $4}')" \
			"$(percentiles "$TMP/h2load.log")" \
			"$(echo "$out" | awk '/^requests:/ {print $8}')" \
			"$(echo "$out" | awk '/^requests:/ && ($10 + $12 + $14) > 0 {print "failed=" $10 ";errored=" $12 ";timeout=" $14}')"
		;;
	esac
}

for r in $(seq "$ROUNDS"); do
	for kind in http close h2tls h1tls tlsclose; do
	[[ " $KINDS " == *" $kind "* ]] || continue
	for n in "${NAMES[@]}"; do
		c0=$(cpu_ticks "$n")
		read -r rps p50 p99 reqs errs < <(load "$kind" "$n")
		c1=$(cpu_ticks "$n")
		# Requests per second of the proxy's own CPU time: its efficiency,
		# much steadier than the rate when other work shares the cores.
		rpc=$(awk -v r="$reqs" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { if (t > 0) printf "%.0f", r / (t / hz); else print 0 }')
		echo "$kind $n $rps $p50 $p99 $rpc" >>"$RESULTS"
		echo "round $r $kind $n: $rps req/s p50 ${p50}ms p99 ${p99}ms, $rpc req per proxy CPU-second ${errs:-}" >&2
	done
	done
done
for r in $(seq "$ROUNDS"); do
	[[ " $KINDS " == *" ws "* ]] || break
	for n in "${NAMES[@]}"; do
		c0=$(cpu_ticks "$n")
		out=$(${LOAD_CPU[@]+"${LOAD_CPU[@]}"} "$TMP/wsload" -url "ws://127.0.0.1:${PORT[$n]}/ws" -c "$WS_CONNS" -d "$DURATION")
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
	"median of $ROUNDS rounds of $DURATION; PIN=$PIN; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')${BACKEND_TLS:+; HTTPS backends, $BACKEND_TLS to them (nginx: HTTP/1.1)}"
echo
echo "| test | proxy | rate/s | p50 ms | p99 ms | per proxy CPU-s | rate vs HAProxy | p99 vs HAProxy | per CPU-s vs HAProxy |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for kind in $KINDS; do
	[[ "$kind" == idle* ]] && continue
	hr=$(median "$kind" haproxy 3) h99=$(median "$kind" haproxy 5) hc=$(median "$kind" haproxy 6)
	for n in "${NAMES[@]}"; do
		rate=$(median "$kind" "$n" 3) p50=$(median "$kind" "$n" 4) p99=$(median "$kind" "$n" 5) cpu=$(median "$kind" "$n" 6)
		label="HTTP wrk -t$THREADS -c$CONNS"
		[ "$kind" = close ] && label="HTTP, new connection per request"
		[ "$kind" = ws ] && label="WebSocket echo, $WS_CONNS conns"
		[ "$kind" = h2tls ] && label="HTTP/2 over TLS, h2load -c$CONNS -m$STREAMS"
		[ "$kind" = h1tls ] && label="HTTP/1.1 over TLS, h2load --h1 -c$CONNS"
		[ "$kind" = tlsclose ] && label="HTTPS, new TLS connection per request (wrk)"
		printf "| %s | %s | %.0f | %.3f | %.3f | %.0f | %s | %s | %s |\n" "$label" "$n" "$rate" "$p50" "$p99" "$cpu" "$(ratio "$rate" "$hr")" "$(ratio "$p99" "$h99")" "$(ratio "$cpu" "$hc")"
	done
done
if [ -s "$IDLE_OUT" ]; then
	echo
	echo "Memory per idle keep-alive client connection ($IDLE_CONNS connections, one request each, resident memory before and after; Go heap in use for shoal; resident memory with the connections open and $IDLE_AFTER after they closed):"
	echo
	echo "| connections | proxy | RSS bytes per connection | Go heap bytes per connection | RSS open KiB | RSS closed KiB |"
	echo "| --- | --- | ---: | ---: | ---: | ---: |"
	while read -r k n b h o c; do
		[ "$k" = idle ] && k=plain || k=TLS
		printf "| %s | %s | %s | %s | %s | %s |\n" "$k" "$n" "$b" "$h" "$o" "$c"
	done <"$IDLE_OUT"
fi
