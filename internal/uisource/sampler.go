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

// Run samples every instance's CPU and memory from the host each
// SampleInterval until ctx ends, and returns nil then. CPU is in cores:
// the CPU seconds used since the last sample over the wall time between
// them. Gauges of instances that are gone are deleted. Run also notes the
// rollout in flight so that the end of a short deploy is not missed. Call
// it once.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.SampleInterval)
	defer t.Stop()
	prev := map[string]cpuSample{}
	for {
		s.sample(prev)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample takes one reading of every running instance; prev holds the
// previous CPU readings and is updated.
func (s *Source) sample(prev map[string]cpuSample) {
	st := s.o.Controller.Status()
	s.deploy(st)
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
		p, ok := prev[is.ID]
		prev[is.ID] = cpuSample{seconds: stats.CPUSeconds, at: now}
		if !ok || !now.After(p.at) || stats.CPUSeconds < p.seconds {
			// First reading, or a process of the group ended and took its
			// CPU time along: no rate this time.
			continue
		}
		cores := (stats.CPUSeconds - p.seconds) / now.Sub(p.at).Seconds()
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
