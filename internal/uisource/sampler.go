package uisource

import (
	"context"
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

// cpuSample is one reading of an instance's cumulative CPU time.
type cpuSample struct {
	seconds float64
	at      time.Time
}

// cpuWindow is how many readings back the CPU rate reaches: the kernel
// counts CPU time in 10 ms ticks, so a rate over one second of an idle
// instance jumps between 0 and 0.01 cores; over five it reads true.
const cpuWindow = 5

// Run samples every instance's CPU and memory from the host each
// SampleInterval until ctx ends, and returns nil then. CPU is in cores:
// the CPU seconds used over the last cpuWindow samples divided by the
// wall time they span. Gauges of instances that are gone are deleted. Run also notes the
// rollout in flight so that the end of a short deploy is not missed. Call
// it once.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.SampleInterval)
	defer t.Stop()
	prev := map[string][]cpuSample{}
	for {
		s.sample(prev)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample takes one reading of every running instance; prev holds each
// instance's last CPU readings, oldest first, and is updated.
func (s *Source) sample(prev map[string][]cpuSample) {
	p := s.progress() // before the status: see deploy
	st := s.o.Controller.Status()
	s.deploy(p, st)
	seen := make(map[string]bool, len(st.Instances))
	for _, is := range st.Instances {
		if is.PID == 0 {
			continue // not started
		}
		stats, err := s.o.Host.Stats(is.ID)
		now := s.o.Now()
		if err != nil {
			// Exited between Status and Stats; the next sample drops it.
			s.log.Debug("instance stats", "instance", is.ID, "error", err)
			continue
		}
		seen[is.ID] = true
		s.o.Series.SetGauge(now, timeseries.InstanceRSS(is.ID), float64(stats.RSSBytes))
		cur := cpuSample{seconds: stats.CPUSeconds, at: now}
		hist := prev[is.ID]
		if n := len(hist); n > 0 && (stats.CPUSeconds < hist[n-1].seconds || !now.After(hist[n-1].at)) {
			// A process of the group ended and took its CPU time along
			// (or the clock stepped back): start over.
			hist = hist[:0]
		}
		if len(hist) == cpuWindow {
			hist = append(hist[:0], hist[1:]...)
		}
		hist = append(hist, cur)
		prev[is.ID] = hist
		if len(hist) < 2 {
			continue // a rate needs two readings
		}
		first := hist[0]
		cores := (cur.seconds - first.seconds) / cur.at.Sub(first.at).Seconds()
		s.o.Series.SetGauge(now, timeseries.InstanceCPU(is.ID), cores)
	}
	for id := range prev {
		if !seen[id] {
			delete(prev, id)
			s.o.Series.DeleteGauge(timeseries.InstanceCPU(id))
			s.o.Series.DeleteGauge(timeseries.InstanceRSS(id))
		}
	}
}
