package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// latencyApp is the group the write latency is measured on: no
// controller runs it, so a write is the write alone (the log's commit
// and every replica's apply, or one store's transaction).
const latencyApp = "latency"

// latencies are write latencies.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := slices.Sorted(slices.Values(l))
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s", dur(l.quantile(0.5)), dur(l.quantile(0.9)), dur(l.quantile(0.99)))
}

// reportLatency prints one measurement of the write latency and its
// ratio to the peer's.
func reportLatency(what string, through, alone latencies, retries, servers int) {
	fmt.Printf("write latency %s (%d scale writes, %d server(s), %d made again after a change of leader): %s; peer (a store alone, same run): %s; ratio at p50 %.1fx, p99 %.1fx\n",
		what, len(through), servers, retries, through, alone,
		float64(through.quantile(0.5))/float64(alone.quantile(0.5)), float64(through.quantile(0.99))/float64(alone.quantile(0.99)))
}

// counts asks every agents' process how many instances its hosts ever
// started, run now, and started under an id started before.
func counts(ctx context.Context, procs []*agents) (starts, running, again int64, err error) {
	for _, a := range procs {
		if _, err := fmt.Fprintln(a.stdin, "count"); err != nil {
			return 0, 0, 0, err
		}
		l, err := a.expect(ctx, "count ")
		if err != nil {
			return 0, 0, 0, err
		}
		var st, rn, ag int64
		if _, err := fmt.Sscanf(l, "count %d %d %d", &st, &rn, &ag); err != nil {
			return 0, 0, 0, fmt.Errorf("agents said %q: %w", l, err)
		}
		starts, running, again = starts+st, running+rn, again+ag
	}
	return starts, running, again, nil
}

// snapshot takes a raft snapshot on this side's leader and returns how
// long it took and the size of the largest snapshot kept.
func (s *serverSide) snapshot(ctx context.Context) (time.Duration, int64, error) {
	r := s.leader()
	if r == nil || r.node == nil {
		return 0, 0, errors.New("snapshot: no cluster leader here")
	}
	t := time.Now()
	if err := r.node.Snapshot(ctx); err != nil {
		return 0, 0, fmt.Errorf("snapshot on %s: %w", r.id, err)
	}
	took := time.Since(t)
	var size int64
	snaps, _ := filepath.Glob(filepath.Join(r.dir, "raft", "snapshots", "*", "state.bin"))
	for _, p := range snaps {
		size = max(size, fileSize(p))
	}
	return took, size, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
