#!/usr/bin/env bash
# What `shoal up` costs at idle: CPU (share of one core) and threads of the shoal
# process, with N instances of examples/goapp running and no traffic, while many
# unrelated processes run on the host.
#
#   bench/idlecpu.sh                      # N="1 30", 1000 extra processes, 30 s each
#   N="1 30" EXTRA=0 SECONDS_IDLE=60 bench/idlecpu.sh
#   SHOAL_BIN=/tmp/shoal-old bench/idlecpu.sh   # a shoal built elsewhere
#
# The extra processes are `sleep` in a process group of their own; the host's own
# processes come on top (the script prints the total it saw).
set -euo pipefail

N=${N:-1 30}
EXTRA=${EXTRA:-1000}
SECONDS_IDLE=${SECONDS_IDLE:-30}
BASE_PORT=${BASE_PORT:-18280}
cd "$(dirname "$0")/.."
for t in go curl; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench/idlecpu.sh: $t not found" >&2; exit 2; }
done

TMP=$(mktemp -d -t shoal-idlecpu-XXXXXX)
PIDS=()
SLEEPERS=
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$SLEEPERS" ] && kill -- -"$SLEEPERS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if [ -n "${SHOAL_BIN:-}" ]; then
	cp "$SHOAL_BIN" "$TMP/shoal"
else
	go build -o "$TMP/shoal" ./cmd/shoal
fi

if [ "$EXTRA" -gt 0 ]; then
	# One process group of EXTRA sleeps, ended as a group by cleanup.
	setsid bash -c "for i in \$(seq $EXTRA); do sleep 100000 & done; wait" &
	SLEEPERS=$!
	for _ in $(seq 400); do
		[ "$(pgrep -g "$SLEEPERS" -c sleep || true)" -ge "$EXTRA" ] && break
		sleep 0.05
	done
fi
HZ=$(getconf CLK_TCK)

for n in $N; do
	dir="$TMP/app-$n"
	mkdir -p "$dir"
	cp examples/goapp/main.go examples/goapp/go.mod "$dir/"
	lb=$BASE_PORT admin=$((BASE_PORT + 1))
	sed -e "s/^  min: .*/  min: $n/" -e "s/^  max: .*/  max: $n/" -e "s/^  desired: .*/  desired: $n/" \
		-e "s/127.0.0.1:8081/127.0.0.1:$lb/" -e "s/127.0.0.1:9091/127.0.0.1:$admin/" \
		examples/goapp/shoal.yaml >"$dir/shoal.yaml"
	(cd "$dir" && exec "$TMP/shoal" up >"$dir/up.log" 2>&1) &
	up=$!
	PIDS+=("$up")
	ok=
	for _ in $(seq 1200); do
		if (cd "$dir" && "$TMP/shoal" status 2>/dev/null) | grep -c ' healthy' | grep -qx "$n"; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "bench/idlecpu.sh: $n instances never all healthy" >&2; tail -20 "$dir/up.log" >&2; exit 1; }
	sleep 2 # let the last start's work settle before measuring
	procs=$(ls /proc | grep -c '^[0-9]')
	t0=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$up/stat")
	sleep "$SECONDS_IDLE"
	t1=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$up/stat")
	threads=$(awk '/^Threads:/ { print $2 }' "/proc/$up/status")
	awk -v n="$n" -v t=$((t1 - t0)) -v hz="$HZ" -v s="$SECONDS_IDLE" -v th="$threads" -v p="$procs" \
		'BEGIN { printf "instances=%d cpu_pct=%.2f threads=%d host_processes=%d seconds=%d\n", n, 100 * t / hz / s, th, p, s }'
	kill "$up"
	wait "$up" 2>/dev/null || true
done
