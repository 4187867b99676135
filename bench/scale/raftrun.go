package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/store"
)

// latencyApp is the group the write latency is measured on: no
// controller runs it, so a write is the write alone (the log's commit
// and every replica's apply, or one store's transaction).
const latencyApp = "latency"

// latencyPeer opens the peer of the write latency: a store alone, as one
// `shoal server` has, measured in the same run; and makes the group on
// it and on the leader.
func (s *serverSide) latencyPeer() (*store.Store, error) {
	dir := filepath.Join(s.dir, "peer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	peer, err := store.Open(filepath.Join(dir, "shoal.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	g := api.Group{App: latencyApp, Min: 1, Max: 2, Desired: 1}
	err = peer.PutGroup(g)
	if r := s.leader(); err == nil && r != nil {
		err = r.w.PutGroup(g)
	} else if err == nil {
		err = errors.New("no leader")
	}
	if err != nil {
		peer.Close()
		return nil, fmt.Errorf("latency group: %w", err)
	}
	return peer, nil
}

// writeLatency makes n scale writes (SetDesired, alternately 2 and 1)
// through the leader's writer, each followed by the same write on peer,
// and returns both sets of latencies. A write cut by a change of leader
// is made again on the new leader, within the same measured time (as a
// client asks again); retries counts them.
func (s *serverSide) writeLatency(ctx context.Context, peer *store.Store, n int) (through, alone latencies, retries int, err error) {
	for i := range n {
		want := 2 - i%2
		t := time.Now()
		for try := 0; ; try++ {
			var r *replica
			if err := poll(ctx, 5*time.Millisecond, func() error {
				if r = s.leader(); r == nil {
					return errors.New("no leader")
				}
				return nil
			}); err != nil {
				return nil, nil, retries, fmt.Errorf("write latency: %w", err)
			}
			err := r.w.SetDesired(latencyApp, want)
			if err == nil {
				break
			}
			if try == 20 || !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
				return nil, nil, retries, fmt.Errorf("write latency through %s: %w", r.id, err)
			}
			retries++
			// Until r leads again or another replica's term begins.
			if err := poll(ctx, 5*time.Millisecond, func() error {
				if l := s.leader(); l != nil && (l != r || l.node.IsLeader()) {
					return nil
				}
				return errors.New("no leader")
			}); err != nil {
				return nil, nil, retries, fmt.Errorf("write latency: %w", err)
			}
		}
		through = append(through, time.Since(t))
		t = time.Now()
		if err := peer.SetDesired(latencyApp, want); err != nil {
			return nil, nil, retries, fmt.Errorf("write latency on the peer: %w", err)
		}
		alone = append(alone, time.Since(t))
	}
	return through, alone, retries, nil
}

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

// reportRaft prints the raft log's growth between a and b on the leader
// (entries, and the fleet's host record writes among them, which a
// heartbeat must not make), and each replica's files.
func (s *serverSide) reportRaft(what string, a, b sample) {
	if s.replicas[0].node == nil {
		fmt.Printf("%s: host record writes %d (one server: no raft log)\n", what, b.hostPuts-a.hostPuts)
		return
	}
	mins := b.at.Sub(a.at).Minutes()
	fmt.Printf("%s: raft log +%d entries (%.0f/min); of them host record writes %d, events stored %d (in batches); %d heartbeats a second go to the agents, not to the log; %d new term(s)\n",
		what, b.index-a.index, float64(b.index-a.index)/mins, b.hostPuts-a.hostPuts, b.events-a.events, s.sc.Hosts/int(max(s.sc.HeartbeatEvery.Seconds(), 1)), b.terms-a.terms)
	var parts []string
	for _, r := range s.replicas {
		parts = append(parts, fmt.Sprintf("%s raft.db %s, shoal.db %s", r.id, mib(fileSize(filepath.Join(r.dir, "raft", "raft.db"))), mib(fileSize(filepath.Join(r.dir, "shoal.db")))))
	}
	fmt.Printf("%s: files: %s\n", what, strings.Join(parts, "; "))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// snapshot takes a raft snapshot on the leader and prints how long it
// took and its size.
func (s *serverSide) snapshot(ctx context.Context) {
	r := s.leader()
	if r == nil || r.node == nil {
		return
	}
	t := time.Now()
	if err := r.node.Snapshot(ctx); err != nil {
		fmt.Printf("snapshot on %s: %v\n", r.id, err)
		return
	}
	took := time.Since(t)
	var size int64
	snaps, _ := filepath.Glob(filepath.Join(r.dir, "raft", "snapshots", "*", "state.bin"))
	for _, p := range snaps {
		size = max(size, fileSize(p))
	}
	fmt.Printf("snapshot on the leader %s: %s, %s (the store's file)\n", r.id, round(took), mib(size))
}

// failover kills the leader's raft and measures the time to a new leader
// whose controllers adopted every instance and serve them all, and the
// instances launched meanwhile (none should be: every one is adopted).
func (s *serverSide) failover(ctx context.Context, procs []*agents) error {
	starts0, running0, again0, err := counts(ctx, procs)
	if err != nil {
		return err
	}
	t := time.Now()
	killed, err := s.killLeader()
	if err != nil {
		return err
	}
	var elected time.Duration
	if err := poll(ctx, 5*time.Millisecond, func() error {
		for _, r := range s.replicas {
			if r != killed && r.node.IsLeader() {
				elected = time.Since(t)
				return nil
			}
		}
		return errors.New("no new leader yet")
	}); err != nil {
		return err
	}
	if err := poll(ctx, 5*time.Millisecond, func() error {
		if r := s.leader(); r == nil || r == killed {
			return errors.New("the new leader's term has not begun")
		}
		return nil
	}); err != nil {
		return err
	}
	began := time.Since(t)
	if err := s.waitAppsReady(ctx); err != nil {
		return err
	}
	if err := poll(ctx, 20*time.Millisecond, func() error { return s.serving(nil) }); err != nil {
		return err
	}
	ready := time.Since(t)
	starts1, running1, again1, err := counts(ctx, procs)
	if err != nil {
		return err
	}
	fmt.Printf("failover: leader %s's raft killed; %s elected after %s; its term began after %s; all %d instances adopted and in service after %s; instances launched meanwhile %d (replacements of instances found unhealthy or failed included), of them under an id started before %d; running %d before, %d after\n",
		killed.id, s.leader().id, round(elected), round(began), s.sc.Apps*s.sc.PerApp, round(ready), starts1-starts0, again1-again0, running0, running1)
	return nil
}
