#!/usr/bin/env bash
# HTTP/2 conformance of shoal lb's TLS listeners against HAProxy's, in the
# same run: h2spec (generic, HTTP/2 and HPACK cases) and h2spec -S
# (strict), then the CPU time each proxy spends on the same h2load run of
# HTTP/2 over TLS (what the frame checks of h2Guard cost).
#
#   bench/h2spec.sh                 # 3 interleaved h2load rounds of 40000 requests
#   ROUNDS=5 REQUESTS=100000 bench/h2spec.sh
#   BASE_YAML='limits: {h2_fast_path: true}' bench/h2spec.sh  # the loops' HTTP/2 server
#
# Both proxies terminate TLS with the same self-signed P-256 certificate
# and forward to one bench/backend (100-byte answers). h2spec is installed
# outside the module: go install github.com/summerwind/h2spec/cmd/h2spec@latest
set -euo pipefail

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-40000}
BASE_PORT=${BASE_PORT:-18460}
H2SPEC=${H2SPEC:-$(command -v h2spec || echo "$(go env GOPATH)/bin/h2spec")}
cd "$(dirname "$0")/.."

for t in go haproxy h2load openssl "$H2SPEC"; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "bench/h2spec.sh: $t not found. On Debian/Ubuntu: sudo apt-get install -y haproxy nghttp2-client openssl; h2spec: go install github.com/summerwind/h2spec/cmd/h2spec@latest (outside the module)" >&2
		exit 2
	fi
done

. bench/lib.sh # from the repository root (the cd above)
bench_start h2spec

SHOAL_PORT=$BASE_PORT HAPROXY_PORT=$((BASE_PORT + 1)) ADMIN_PORT=$((BASE_PORT + 9))
ports_free bench/h2spec.sh $SHOAL_PORT $HAPROXY_PORT $ADMIN_PORT

echo "building shoal and backend ..." >&2
go build -o "$TMP/shoal" ./cmd/shoal
go build -o "$TMP/backend" ./bench/backend
"$TMP/backend" -name b1 >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
B1=$(wait_line "$TMP/backend.log" 'listening addr=([0-9.:]+)')

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" \
	-out "$TMP/cert.pem" -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"

cat >"$TMP/lb.yaml" <<EOC
listeners:
  - name: tls
    listen: 127.0.0.1:$SHOAL_PORT
    tls:
      - cert: $TMP/cert.pem
        key: $TMP/key.pem
routes:
  - name: all
    pool: be
pools:
  - name: be
    targets:
      - addr: $B1
admin:
  listen: 127.0.0.1:$ADMIN_PORT
${BASE_YAML:-}
EOC
"$TMP/shoal" lb -c "$TMP/lb.yaml" -log-level warn >"$TMP/shoal.log" 2>&1 &
PIDS+=($!)
SHOAL_PID=$!

cat >"$TMP/haproxy.cfg" <<EOC
global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT ssl crt $TMP/haproxy.pem alpn h2,http/1.1
    default_backend be
backend be
    http-reuse always
    server s1 $B1
EOC
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

for p in $SHOAL_PORT $HAPROXY_PORT; do
	for _ in $(seq 200); do
		curl -sk --http2 -o /dev/null "https://127.0.0.1:$p/" && break
		sleep 0.05
	done
done

echo "== h2spec $("$H2SPEC" --version 2>/dev/null | head -1)"
for name in shoal haproxy; do
	port=$SHOAL_PORT
	[ $name = haproxy ] && port=$HAPROXY_PORT
	for strict in "" "-S"; do
		res=$("$H2SPEC" $strict -t -k -h 127.0.0.1 -p "$port" -o 3 2>&1 | tail -1 || true)
		echo "$name h2spec ${strict:-(default)}: $res"
	done
done

# cpu PID: the process's user + system time in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
echo "== CPU seconds per $REQUESTS HTTP/2 requests (h2load -c 64 -m 10), interleaved rounds"
for round in $(seq "$ROUNDS"); do
	for name in shoal haproxy; do
		pid=$SHOAL_PID port=$SHOAL_PORT
		[ $name = haproxy ] && pid=$HAPROXY_PID port=$HAPROXY_PORT
		a=$(cpu "$pid")
		out=$(h2load -c 64 -m 10 -n "$REQUESTS" -t 1 "https://127.0.0.1:$port/" 2>&1)
		b=$(cpu "$pid")
		ok=$(echo "$out" | grep -oE '[0-9]+ succeeded' | grep -oE '[0-9]+')
		echo "round $round $name: cpu $(awk -v t=$((b - a)) -v h="$TCK" 'BEGIN{printf "%.2f", t/h}') s, $ok/$REQUESTS succeeded, $(echo "$out" | grep -oE '[0-9.]+ req/s' | head -1)"
	done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
