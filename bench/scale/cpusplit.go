package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// cpuSplit is a CPU profile of this process that, when stopped, sums its
// samples by the pprof label "server" (cluster.go): the CPU time of each
// replica, and of what carries no label (the runtime's own goroutines,
// the shared fleet listener's hello, the bench).
type cpuSplit struct {
	buf   bytes.Buffer
	start time.Time
	on    bool
}

// startCPUSplit starts the profile; an error (one is running already,
// -cpuprofile) leaves it off, and the split is then not reported.
func startCPUSplit() *cpuSplit {
	c := &cpuSplit{start: time.Now()}
	c.on = pprof.StartCPUProfile(&c.buf) == nil
	return c
}

// stop ends the profile, writes it to path unless that is empty, and
// returns the CPU per label value ("" for none), in seconds of CPU per
// second of wall time.
func (c *cpuSplit) stop(path string) (map[string]float64, error) {
	if !c.on {
		return nil, fmt.Errorf("no CPU profile (one was running already)")
	}
	pprof.StopCPUProfile()
	wall := time.Since(c.start).Seconds()
	if path != "" {
		if err := os.WriteFile(path, c.buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
	}
	p, err := profile.ParseData(c.buf.Bytes())
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
	if i < 0 {
		return nil, fmt.Errorf("the CPU profile has no cpu samples")
	}
	out := map[string]float64{}
	for _, s := range p.Sample {
		var id string
		if v := s.Label["server"]; len(v) > 0 {
			id = v[0]
		}
		out[id] += float64(s.Value[i]) / 1e9 / wall
	}
	return out, nil
}

// formatSplit prints the followers' CPU (their raft goroutines, all
// labelled) and the leader's as the rest of the process: the leader's
// work includes goroutines no label reaches (timers' callbacks such as
// the health checks' schedule, the garbage collector's workers).
func formatSplit(m map[string]float64, leader string) string {
	var b strings.Builder
	total, followers := 0.0, 0.0
	for _, id := range slices.Sorted(maps.Keys(m)) {
		total += m[id]
		if id != "" && id != leader {
			followers += m[id]
			fmt.Fprintf(&b, "follower %s %.3f s/s; ", id, m[id])
		}
	}
	fmt.Fprintf(&b, "leader %s %.3f s/s (the process's %.3f less the followers'; %.3f of it under its label)", leader, total-followers, total, m[leader])
	return b.String()
}
