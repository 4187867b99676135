#!/usr/bin/env bash
# Compression at the balancer: shoal lb against nginx with `gzip on` at
# the same level (1, nginx's default gzip_comp_level and Shoal's default
# level), on this machine, in the same run.
#
#   bench/compress.sh                       # 3 interleaved rounds of 10s
#   ROUNDS=5 DURATION=20s bench/compress.sh
#
# Two backends (bench/backend) serve /compress/bundle.js (2 MiB of
# JavaScript), /compress/data.json (1 MiB of JSON) and /compress/page.js
# (50 KiB) uncompressed with Content-Length; each proxy compresses them
# for clients that send Accept-Encoding: gzip. Measured per proxy:
#
#   - CPU per compressed megabyte: the proxy's CPU time (user + system,
#     nginx's workers included) over the megabytes of uncompressed body it
#     compressed, under wrk load on the 2 MiB bundle and on the JSON body;
#   - req/s of the compressed 50 KiB answer, and requests per proxy
#     CPU-second;
#   - the compressed sizes, to show the levels compare (same class).
#
# Shoal's brotli and zstd on the bundle are measured too (nginx has
# neither built in). wrk, proxies and backends share the machine's cores;
# rounds are interleaved (shoal, nginx, shoal, ...) so drift hits both.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
BIG_CONNS=${BIG_CONNS:-16}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BASE_PORT=${BASE_PORT:-18180}
cd "$(dirname "$0")/.."

for t in go nginx wrk curl; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "bench/compress.sh: $t not found. On Debian/Ubuntu: sudo apt-get install -y nginx-light wrk curl" >&2
		exit 2
	fi
done

. bench/lib.sh # from the repository root (the cd above)
bench_start compress

SHOAL_PORT=$BASE_PORT NGINX_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 9))
ports_free bench/compress.sh $SHOAL_PORT $NGINX_PORT $ADMIN_PORT

echo "building shoal and backend ..." >&2
go build -o "$TMP/shoal" ./cmd/shoal
go build -o "$TMP/backend" ./bench/backend
start_backends
B1=${BACKENDS[0]} B2=${BACKENDS[1]}

# Shoal: compression is on by default (text types, level 1, 1 KiB on).
cat >"$TMP/lb.yaml" <<EOC
listeners:
  - name: web
    listen: 127.0.0.1:$SHOAL_PORT
routes:
  - name: all
    pool: be
    compression: {level: 1}
    # The assets are immutable: without this the asset cache (on by
    # default since 92b81dc) would compress each once and serve the stored
    # copy, and the test would measure the cache (bench/pageload.sh does).
    cache: {enabled: false}
pools:
  - name: be
    targets:
      - addr: $B1
      - addr: $B2
admin:
  listen: 127.0.0.1:$ADMIN_PORT
EOC
"$TMP/shoal" lb -c "$TMP/lb.yaml" -log-level warn >"$TMP/shoal.log" 2>&1 &
PIDS+=($!)
SHOAL_PID=$!

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOC
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    gzip on;
    gzip_comp_level 1;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;
    gzip_types application/javascript application/json;
    upstream be {
        server $B1;
        server $B2;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Connection "";
        }
    }
}
EOC
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!

for port in $SHOAL_PORT $NGINX_PORT; do
	ok=
	for _ in $(seq 200); do
		if curl -fs -o /dev/null "http://127.0.0.1:$port/"; then ok=1; break; fi
		sleep 0.05
	done
	if [ -z "$ok" ]; then
		echo "bench/compress.sh: proxy on port $port does not answer" >&2
		cat "$TMP"/*.log "$TMP/nginx/logs/error.log" >&2 || true
		exit 1
	fi
done

declare -A PORT=([shoal]=$SHOAL_PORT [nginx]=$NGINX_PORT)
declare -A PID=([shoal]=$SHOAL_PID [nginx]=$NGINX_PID)
HZ=$(getconf CLK_TCK)
cpu_ticks() {
	local p=${PID[$1]} total=0 t
	for q in $p $(pgrep -P "$p" || true); do
		t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$q/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	echo "$total"
}

# The tests: name, path, coding, connections, proxies.
TESTS=(
	"bundle-gzip /compress/bundle.js gzip $BIG_CONNS shoal,nginx"
	"json-gzip /compress/data.json gzip $BIG_CONNS shoal,nginx"
	"page50k-gzip /compress/page.js gzip $CONNS shoal,nginx"
	"bundle-br /compress/bundle.js br $BIG_CONNS shoal"
	"bundle-zstd /compress/bundle.js zstd $BIG_CONNS shoal"
)

# Sizes: uncompressed, and compressed by each proxy (checked decodable).
declare -A RAW SIZE
for t in "${TESTS[@]}"; do
	read -r name path coding _ proxies <<<"$t"
	RAW[$path]=$(curl -fs "http://$B1$path" | wc -c)
	for n in ${proxies//,/ }; do
		hdrs=$(curl -fs -D - -o "$TMP/body" -H "Accept-Encoding: $coding" "http://127.0.0.1:${PORT[$n]}$path")
		if ! grep -qi "^content-encoding: $coding" <<<"$hdrs"; then
			echo "bench/compress.sh: $n did not compress $path with $coding:" >&2
			echo "$hdrs" >&2
			exit 1
		fi
		if [ "$coding" = gzip ] && ! gzip -dc "$TMP/body" | cmp -s - <(curl -fs "http://$B1$path"); then
			echo "bench/compress.sh: $n's gzip of $path does not decode to the original" >&2
			exit 1
		fi
		SIZE[$name.$n]=$(wc -c <"$TMP/body")
	done
done

RESULTS="$TMP/results"
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
	for t in "${TESTS[@]}"; do
		read -r name path coding conns proxies <<<"$t"
		for n in ${proxies//,/ }; do
			c0=$(cpu_ticks "$n")
			out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" -H "Accept-Encoding: $coding" "http://127.0.0.1:${PORT[$n]}$path")
			c1=$(cpu_ticks "$n")
			reqs=$(echo "$out" | awk '/requests in/ {print $1}')
			rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
			errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
			# ms of proxy CPU per MB (10^6 bytes) of uncompressed body, and
			# requests per proxy CPU-second.
			line=$(awk -v q="$reqs" -v t=$((c1 - c0)) -v hz="$HZ" -v raw="${RAW[$path]}" 'BEGIN {
				s = t / hz; mb = q * raw / 1e6
				printf "%.2f %.0f", (mb > 0 ? s * 1000 / mb : 0), (s > 0 ? q / s : 0) }')
			echo "$name $n $rps $line" >>"$RESULTS"
			echo "round $r $name $n: $rps req/s, $line (ms CPU/MB, req per CPU-s) $errs" >&2
		done
	done
done

median() {
	awk -v k="$1" -v n="$2" -v c="$3" '$1 == k && $2 == n {print $c}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "shoal lb vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') gzip, level 1 both, median of $ROUNDS rounds of $DURATION;" \
	"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo
echo "| test | proxy | body bytes | compressed bytes | req/s | ms CPU per MB | req per CPU-s | req/s vs nginx | CPU per MB vs nginx |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for t in "${TESTS[@]}"; do
	read -r name path coding conns proxies <<<"$t"
	nr=$(median "${name%-*}-gzip" nginx 3) nc=$(median "${name%-*}-gzip" nginx 4)
	for n in ${proxies//,/ }; do
		rps=$(median "$name" "$n" 3) cpu=$(median "$name" "$n" 4) rpc=$(median "$name" "$n" 5)
		printf "| %s (wrk -c%s) | %s %s | %s | %s | %.0f | %.2f | %.0f | %s | %s |\n" "$path" "$conns" "$n" "$coding" \
			"${RAW[$path]}" "${SIZE[$name.$n]}" "$rps" "$cpu" "$rpc" "$(ratio "$rps" "$nr")" "$(ratio "$cpu" "$nc")"
	done
done
