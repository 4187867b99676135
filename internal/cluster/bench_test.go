package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
)

// BenchmarkSetDesired measures the latency of an acknowledged scale write
// (SetDesired), one at a time: through a 3-node cluster over the TLS
// transport on 127.0.0.1 (committed by a majority and applied by the
// leader's replica), and on a single store.Store (the peer: what one
// `shoal server` pays). Each reports p50-ms and p99-ms; their ratio is
// the price of replication. Every write is durable in both (fsync by
// bbolt and raft-boltdb).
func BenchmarkSetDesired(b *testing.B) {
	b.Run("cluster3", func(b *testing.B) {
		l := newLab(b, nil)
		l.three()
		l.apply(store.PutGroup{Group: api.Group{App: "web", Max: 1 << 20}})
		lead := l.leader(10 * time.Second)
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			for try := 0; ; try++ {
				ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
				_, err := lead.n.Apply(ctx, store.SetDesired{App: "web", Desired: i % 1000})
				cancel()
				if err == nil {
					break
				}
				if !errors.Is(err, ErrNotLeader) || try == 3 {
					b.Fatal(err)
				}
				lead = l.leader(10 * time.Second) // an election under load
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
	b.Run("store", func(b *testing.B) {
		st, err := store.Open(filepath.Join(b.TempDir(), "shoal.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if err := st.PutGroup(api.Group{App: "web", Max: 1 << 20}); err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if err := st.SetDesired("web", i%1000); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkLeaderRead measures what a linearizable read of the leader's
// state costs (GET /v1/status, /v1/env on a cluster's leader): the
// leader's confirmation (VerifyLeader, a heartbeat round over the TLS
// transport on 127.0.0.1) and then the read of its store, against the
// read alone (the peer: ?stale, or any read before the confirmation
// existed). "parallel" runs 16 readers at once per GOMAXPROCS, which share
// rounds. Each reports p50-ms and p99-ms.
func BenchmarkLeaderRead(b *testing.B) {
	l := newLab(b, nil)
	l.three()
	l.apply(store.PutGroup{Group: api.Group{App: "web", Max: 8, Desired: 3}})
	lead := l.leader(10 * time.Second)
	read := func(verify bool) (time.Duration, error) {
		start := time.Now()
		if verify {
			if err := lead.n.VerifyLeader(b.Context(), lead.n.Term()); err != nil {
				return 0, err
			}
		}
		_, _, err := lead.st.GetGroup("web")
		return time.Since(start), err
	}
	for _, tc := range []struct {
		name     string
		verify   bool
		parallel bool
	}{{"stale", false, false}, {"verified", true, false}, {"verified-parallel", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			if !tc.parallel {
				for range b.N {
					d, err := read(tc.verify)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, d)
				}
			} else {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						d, err := read(tc.verify)
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					}
				})
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}
