#!/usr/bin/env bash
# Count the system calls shoal lb makes per keep-alive request on its fast
# path, for one or more shoal binaries (e.g. before and after a change).
#
#   bench/syscalls.sh                                  # the shoal of this tree
#   bench/syscalls.sh /tmp/shoal-before /tmp/shoal-after
#   REQUESTS=40000 ROUNDS=3 CONNS=64 bench/syscalls.sh /tmp/a /tmp/b
#
# Each binary runs `shoal lb` (plain HTTP listener, so the fast path on the
# event loops) in front of the two backends of bench/lb.sh (bench/backend,
# ~100-byte answers), all on 127.0.0.1. Per round and binary: a short
# warm-up (fills the target connection pools), then `strace -c -f -p PID`
# is attached to every thread of the balancer while wrk sends a fixed
# number of keep-alive requests (REQUESTS in all, split over wrk's threads;
# a Lua script stops each thread after its share), then strace is detached.
# The request count is the balancer's own shoal_lb_requests_total (summed
# over its series) before and after the traced window, read from the admin
# listener outside that window. Rounds interleave the binaries so that drift
# in the machine's load hits each alike; the table is the median per
# request over the rounds.
#
# strace slows every system call a lot, so the balancer runs much slower
# than untraced and events batch more per epoll_wait: compare binaries in
# one run, do not read the epoll_wait figure as the untraced one.
#
# Needs wrk and strace (Debian: apt-get install -y wrk strace), and the
# right to trace a process that is not strace's child: root, or Yama's
# kernel.yama.ptrace_scope at 0.
set -euo pipefail

REQUESTS=${REQUESTS:-40000}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
BASE_PORT=${BASE_PORT:-18180}
cd "$(dirname "$0")/.."

for t in go wrk strace curl; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench/syscalls.sh: $t not found" >&2; exit 2; }
done

. bench/lib.sh # from the repository root (the cd above)
bench_start syscalls

BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
	echo "building shoal ..." >&2
	go build -o "$TMP/shoal" ./cmd/shoal
	BINS=("$TMP/shoal")
fi
go build -o "$TMP/backend" ./bench/backend

start_backends

# One shoal lb per binary, each on its own pair of ports. The listener and
# admin addresses are written under "addr", the name every shoal so far
# accepts (newer binaries log a warning and read it as "listen").
LB_PID=() WEB_PORT=() ADMIN_PORT=()
for i in "${!BINS[@]}"; do
	web=$((BASE_PORT + 2 * i)) admin=$((BASE_PORT + 2 * i + 1))
	ports_free bench/syscalls.sh $web $admin
	cat >"$TMP/lb$i.yaml" <<EOF
listeners:
  - name: web
    addr: 127.0.0.1:$web
routes:
  - name: all
    pool: be
pools:
  - name: be
    algorithm: round_robin
    targets:
      - addr: ${BACKENDS[0]}
      - addr: ${BACKENDS[1]}
admin:
  addr: 127.0.0.1:$admin
EOF
	"${BINS[$i]}" lb -c "$TMP/lb$i.yaml" -log-level warn >"$TMP/lb$i.log" 2>&1 &
	PIDS+=($!)
	LB_PID+=($!) WEB_PORT+=("$web") ADMIN_PORT+=("$admin")
	ok=
	for _ in $(seq 200); do
		if curl -fs -o /dev/null "http://127.0.0.1:$web/"; then ok=1; break; fi
		sleep 0.05
	done
	[ -n "$ok" ] || { echo "bench/syscalls.sh: ${BINS[$i]} does not answer on $web" >&2; cat "$TMP/lb$i.log" >&2; exit 1; }
done

# wrk stops each thread once it has its share of the responses.
cat >"$TMP/stop.lua" <<'EOF'
local limit, n = 0, 0
function init(args) limit = tonumber(args[1]) end
function response(status, headers, body)
	n = n + 1
	if n >= limit then wrk.thread:stop() end
end
EOF
PER_THREAD=$((REQUESTS / THREADS))

# served I: the balancer's answered requests so far (all series summed).
# The admin token is the one shoal lb writes next to its config.
served() {
	curl -fs -H "Authorization: Bearer $(cat "$TMP/.shoal/admin.token")" "http://127.0.0.1:${ADMIN_PORT[$1]}/metrics" |
		awk '/^shoal_lb_requests_total[{ ]/ { s += $NF } END { printf "%d\n", s }'
}

# cpu PID: CPU time (user + system, in clock ticks) of the process so far.
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo gone; }

# The columns: per request, the calls of each of these, then all others.
COLS=(read write epoll_pwait epoll_wait epoll_ctl futex nanosleep)
RESULTS="$TMP/results"
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
	for i in "${!BINS[@]}"; do
		url="http://127.0.0.1:${WEB_PORT[$i]}/"
		wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$url" >/dev/null
		c0=$(served "$i")
		strace -c -f -p "${LB_PID[$i]}" -o "$TMP/strace.out" 2>"$TMP/strace.err" &
		spid=$!
		wait_line "$TMP/strace.err" '(attached)' >/dev/null
		wrk -t"$THREADS" -c"$CONNS" -d120s -s "$TMP/stop.lua" "$url" -- "$PER_THREAD" >"$TMP/wrk.out" 2>&1 &
		wpid=$!
		# wrk's threads stop at their share but wrk itself waits out -d: once
		# wrk has used no CPU for half a second, stop it (SIGINT: wrk prints
		# its summary). The idle half second adds the Go runtime's idle calls
		# (a few dozen) to the window, noise next to REQUESTS. At most 120 s.
		prev= same=0
		for _ in $(seq 1200); do
			kill -0 "$wpid" 2>/dev/null || break
			now=$(cpu "$wpid")
			if [ "$now" = "$prev" ]; then same=$((same + 1)); else same=0; fi
			[ "$same" -ge 5 ] && break
			prev=$now
			sleep 0.1
		done
		kill -INT "$wpid" 2>/dev/null || true
		wait "$wpid" || true
		out=$(cat "$TMP/wrk.out")
		kill -INT "$spid"
		wait "$spid" || true
		c1=$(served "$i")
		n=$((c1 - c0))
		bad=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
		# strace -c rows: % time, seconds, usecs/call, calls, [errors], name.
		line=$(awk -v n="$n" -v cols="${COLS[*]}" -v bin="$i" '
			BEGIN { split(cols, c, " ") }
			/^-+/ { sep++; next }
			sep == 1 && NF >= 5 {
				name = $NF; calls[name] = $4; if (NF == 6) errs[name] = $5
				total += $4
			}
			END {
				printf "%s %d", bin, n
				known = 0
				for (k = 1; k in c; k++) { printf " %.3f", calls[c[k]] / n; known += calls[c[k]] }
				printf " %.3f %.3f %.3f\n", (total - known) / n, total / n, errs["read"] / n
			}' "$TMP/strace.out")
		echo "$line" >>"$RESULTS"
		echo "round $r ${BINS[$i]}: $line $bad" >&2
		if [ -n "${KEEP_STRACE:-}" ]; then cp "$TMP/strace.out" "$KEEP_STRACE.r$r.b$i"; fi
	done
done

# median BIN COLUMN
median() {
	awk -v b="$1" -v c="$2" '$1 == b {print $c}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo
echo "System calls per keep-alive request of shoal lb (strace -c -f), wrk -t$THREADS -c$CONNS, $REQUESTS requests per round, median of $ROUNDS rounds; $(nproc) cores"
echo
printf "| binary | requests (last round) |"
for c in "${COLS[@]}"; do printf " %s |" "$c"; done
echo " other | total | read errors (EAGAIN) |"
printf "| --- | ---: |"
for _ in "${COLS[@]}" other total eagain; do printf " ---: |"; done
echo
for i in "${!BINS[@]}"; do
	printf "| %s | %s |" "${BINS[$i]}" "$(awk -v b="$i" '$1 == b {n = $2} END {print n}' "$RESULTS")"
	for k in $(seq 3 $((${#COLS[@]} + 5))); do printf " %s |" "$(median "$i" "$k")"; done
	echo
done
