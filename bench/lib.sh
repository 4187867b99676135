# Shared by the bench scripts (source it from the repository root): the
# temporary folder and the processes to end (bench_start), ports that must be
# free, waiting for a log line, and starting the two HTTP backends.

# bench_start NAME: a temporary folder in TMP, the pids to end at exit in
# PIDS (appended by the script), and a trap that ends them and removes TMP
# when the script exits, an interrupt or a TERM included.
bench_start() {
	TMP=$(mktemp -d -t "shoal-$1-XXXXXX")
	PIDS=()
	trap bench_cleanup EXIT
	trap 'exit 143' INT TERM # then EXIT cleans up
}

bench_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}

# port_free PORT: nothing listens on it.
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

# ports_free SCRIPT PORT...: exit 2, naming SCRIPT and the port, when one
# is in use.
ports_free() {
	local script=$1
	shift
	for p in "$@"; do
		port_free "$p" || { echo "$script: port $p is in use (set BASE_PORT)" >&2; exit 2; }
	done
}

# wait_line FILE REGEX: wait up to 10s for a line, print its first group.
wait_line() {
	for _ in $(seq 200); do
		if m=$(grep -oE "$2" "$1" 2>/dev/null | head -1) && [ -n "$m" ]; then
			echo "$m" | sed -E "s/$2/\1/"
			return 0
		fi
		sleep 0.05
	done
	echo "$(basename "$0"): timed out waiting for '$2' in $1:" >&2
	cat "$1" >&2
	exit 1
}

# start_backends: two bench/backend processes (built as $TMP/backend), their
# host:port in BACKENDS, their pids appended to PIDS for the caller's cleanup.
# With LOAD_CPU set (a command prefix, e.g. (taskset -c 1)) they run under it;
# BACKEND_ARGS (an array) are added to their arguments.
start_backends() {
	BACKENDS=()
	for i in 1 2; do
		${LOAD_CPU[@]+"${LOAD_CPU[@]}"} "$TMP/backend" -name "b$i" ${BACKEND_ARGS[@]+"${BACKEND_ARGS[@]}"} >"$TMP/backend$i.log" 2>&1 &
		PIDS+=($!)
		BACKENDS+=("$(wait_line "$TMP/backend$i.log" 'listening addr=([0-9.:]+)')")
	done
}
