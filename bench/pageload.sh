#!/usr/bin/env bash
# Page load through Shoal's compression and asset cache, against Shoal with
# both off and nginx with `gzip on`, in chromium over a 4 Mbit/s link; then
# req/s of the cached 2 MiB bundle, Shoal's asset cache against nginx's
# proxy_cache, with wrk on this machine. Needs root (network namespaces).
#
#   bench/pageload.sh                        # 3 rounds of page loads, 3 wrk rounds of 10s
#   ROUNDS=5 DURATION=20s bench/pageload.sh
#
# Page loads: e2e TestPageLoadInBrowser (the meteor-like example's page and
# its 2 MiB bundle; two visitors per front end and round, each a fresh
# browser context), interleaved per round; the medians of the navigation's
# load time and the bundle's time are printed per front end and visit.
# Round 1's first Shoal visit fetches the bundle (MISS); every later Shoal
# visit is a hit.
#
# req/s: the bundle through `shoal lb` (cache and compression on, the
# defaults) and nginx (proxy_cache, gzip on at level 1) in front of the same
# app, both warm, asked for identity and for gzip, rounds interleaved.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
BASE_PORT=${BASE_PORT:-18280}
cd "$(dirname "$0")/.."

for t in go node nginx wrk curl; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "bench/pageload.sh: $t not found. On Debian/Ubuntu: sudo apt-get install -y nginx-light wrk curl nodejs npm chromium" >&2
		exit 2
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "bench/pageload.sh: needs root (the page loads run in network namespaces)" >&2
	exit 2
fi
[ -d e2e/browser/node_modules/playwright-core ] || (cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error)

. bench/lib.sh # from the repository root (the cd above)
bench_start pageload

echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"

# 1. Page loads in chromium.
echo "page loads: $ROUNDS rounds ..." >&2
SHOAL_PAGELOAD_ROUNDS=$ROUNDS SHOAL_PAGELOAD_OUT=$TMP/loads.json \
	go test -count=1 -timeout 30m -run '^TestPageLoadInBrowser$' ./e2e >"$TMP/e2e.log" 2>&1 || {
	cat "$TMP/e2e.log" >&2
	exit 1
}
node - "$TMP/loads.json" <<'EOJ'
const fs = require("fs");
const lines = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map(JSON.parse);
const med = (a) => { a = a.slice().sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
const groups = {};
for (const l of lines) (groups[`${l.target} visit ${l.visit}`] ||= []).push(l);
console.log("\npage load over 4 Mbit/s (medians of " + Object.values(groups)[0].length + " rounds)");
console.log("front end, visit            load ms  bundle ms  bundle bytes on the wire  cache");
for (const [k, ls] of Object.entries(groups)) {
  console.log(`${k.padEnd(26)} ${String(Math.round(med(ls.map((l) => l.load_ms)))).padStart(7)}  ${String(Math.round(med(ls.map((l) => l.bundle_ms)))).padStart(9)}  ${String(med(ls.map((l) => l.bundle_transfer))).padStart(24)}  ${[...new Set(ls.map((l) => l.cache || "-"))].join(",")}`);
}
EOJ

# 2. req/s of the cached bundle.
APP_PORT=$BASE_PORT SHOAL_PORT=$((BASE_PORT + 1)) NGINX_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 9))
ports_free bench/pageload.sh $APP_PORT $SHOAL_PORT $NGINX_PORT $ADMIN_PORT
go build -o "$TMP/shoal" ./cmd/shoal
(cd examples/meteor-like && PORT=$APP_PORT HOST=127.0.0.1 BOOT_DELAY_MS=0 exec node main.js) >"$TMP/app.log" 2>&1 &
PIDS+=($!)
cat >"$TMP/lb.yaml" <<EOC
listeners: [{name: web, listen: '127.0.0.1:$SHOAL_PORT'}]
routes: [{name: app, pool: app}]
pools: [{name: app, targets: [{addr: '127.0.0.1:$APP_PORT'}]}]
admin: {listen: '127.0.0.1:$ADMIN_PORT'}
EOC
"$TMP/shoal" lb -c "$TMP/lb.yaml" -log-level warn >"$TMP/shoal.log" 2>&1 &
PIDS+=($!)
mkdir -p "$TMP/nginx/cache"
cat >"$TMP/nginx/nginx.conf" <<EOC
worker_processes 2;
daemon off;
user root;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    proxy_cache_path $TMP/nginx/cache keys_zone=assets:10m max_size=256m;
    gzip on;
    gzip_comp_level 1;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;
    gzip_types application/javascript;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://127.0.0.1:$APP_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache assets;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOC
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
BUNDLE=
for _ in $(seq 200); do
	BUNDLE=$(curl -fs "http://127.0.0.1:$APP_PORT/" 2>/dev/null | grep -o '/[0-9a-f]\{40\}\.js' || true)
	[ -n "$BUNDLE" ] && break
	sleep 0.05
done
[ -n "$BUNDLE" ] || { echo "bench/pageload.sh: the app does not answer" >&2; cat "$TMP/app.log" >&2; exit 1; }
declare -A PORT=([shoal]=$SHOAL_PORT [nginx]=$NGINX_PORT)
for n in shoal nginx; do
	ok=
	for _ in $(seq 200); do
		# Warm: fetch until the front end says HIT, for both codings.
		h1=$(curl -fs -o /dev/null -D - "http://127.0.0.1:${PORT[$n]}$BUNDLE" 2>/dev/null || true)
		curl -fs -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:${PORT[$n]}$BUNDLE" 2>/dev/null || true
		if grep -qi '^x-cache-status: hit' <<<"$h1"; then ok=1; break; fi
		sleep 0.05
	done
	[ -n "$ok" ] || { echo "bench/pageload.sh: $n does not serve the bundle from its cache" >&2; exit 1; }
done

RESULTS=$TMP/wrk
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
	for coding in identity gzip; do
		for n in shoal nginx; do
			out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Accept-Encoding: $coding" "http://127.0.0.1:${PORT[$n]}$BUNDLE")
			rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
			errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
			echo "$coding $n $rps" >>"$RESULTS"
			echo "round $r $coding $n: $rps req/s $errs" >&2
		done
	done
done
echo
echo "cached 2 MiB bundle, req/s (median of $ROUNDS rounds, $CONNS connections)"
for coding in identity gzip; do
	s=$(awk -v c=$coding '$1 == c && $2 == "shoal" {print $3}' "$RESULTS" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
	g=$(awk -v c=$coding '$1 == c && $2 == "nginx" {print $3}' "$RESULTS" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
	awk -v c=$coding -v s="$s" -v g="$g" 'BEGIN { printf "%-9s shoal %9.1f  nginx proxy_cache %9.1f  ratio %.2f\n", c, s, g, (g > 0 ? s / g : 0) }'
done
