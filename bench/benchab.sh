#!/usr/bin/env bash
# A/B the balancer's Go benchmarks (internal/lb, internal/pool) of two
# source trees in one session, e.g. a commit against the current tree:
#
#   git worktree add /tmp/before <commit>
#   bench/benchab.sh /tmp/before .            # 5 interleaved runs of each
#   COUNT=10 BENCH='Proxy|Pick' bench/benchab.sh /tmp/before .
#   git worktree remove /tmp/before
#
# It compiles each tree's test binaries once, then runs them alternately
# (before, after, before, ...; each run is `go test -run x -bench $BENCH
# -benchmem -count 1` of both packages) so that drift in the machine's load
# hits both alike, and prints the median ns/op, B/op and allocs/op of each
# benchmark per tree. Allocations are exact; ns/op on a shared machine is
# noise-prone, compare it only within one run.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: bench/benchab.sh BEFORE_TREE AFTER_TREE" >&2; exit 2; }
COUNT=${COUNT:-5}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
PKGS=(lb pool)
TREES=("$(cd "$1" && pwd)" "$(cd "$2" && pwd)")
NAMES=(before after)

TMP=$(mktemp -d -t shoal-benchab-XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

for t in 0 1; do
	for p in "${PKGS[@]}"; do
		(cd "${TREES[$t]}" && go test -c -o "$TMP/${NAMES[$t]}-$p.test" "./internal/$p/")
	done
done
for r in $(seq "$COUNT"); do
	for t in 0 1; do
		for p in "${PKGS[@]}"; do
			(cd "${TREES[$t]}/internal/$p" && "$TMP/${NAMES[$t]}-$p.test" -test.run x \
				-test.bench "$BENCH" -test.benchmem -test.benchtime "$BENCHTIME" -test.count 1) >>"$TMP/${NAMES[$t]}.txt"
		done
	done
	echo "run $r of $COUNT done" >&2
done

# col TREE NAME UNIT: the median of the values of UNIT for benchmark NAME.
col() {
	awk -v n="$2" -v u="$3" '$1 == n { for (i = 3; i <= NF; i++) if ($(i + 1) == u) print $i }' "$TMP/$1.txt" |
		sort -g | awk '{a[NR] = $1} END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'
}
echo
echo "Medians of $COUNT runs; before = ${TREES[0]}, after = ${TREES[1]}"
echo
echo "| benchmark | before ns/op | B/op | allocs/op | after ns/op | B/op | allocs/op |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $(cat "$TMP/before.txt" "$TMP/after.txt" | awk '/^Benchmark/ {print $1}' | sort -u); do
	printf '| `%s` |' "${n%-[0-9]*}"
	for t in before after; do
		for u in ns/op B/op allocs/op; do printf ' %s |' "$(col "$t" "$n" "$u")"; done
	done
	echo
done
