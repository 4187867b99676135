# Shared by the bench scripts (source it after setting TMP and PIDS):
# waiting for a log line, and starting the two HTTP backends.

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
# With LOAD_CPU set (a command prefix, e.g. (taskset -c 1)) they run under it.
start_backends() {
	BACKENDS=()
	for i in 1 2; do
		${LOAD_CPU[@]+"${LOAD_CPU[@]}"} "$TMP/backend" -name "b$i" >"$TMP/backend$i.log" 2>&1 &
		PIDS+=($!)
		BACKENDS+=("$(wait_line "$TMP/backend$i.log" 'listening addr=([0-9.:]+)')")
	done
}
