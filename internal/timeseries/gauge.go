package timeseries

import (
	"math"
	"time"
)

// gauge is one per-second ring of values, guarded by Store.mu.
type gauge struct {
	last int64 // unix second of the latest write
	secs [ringSeconds]int64
	vals [ringSeconds]float32
}

// GaugePoint is one step of a gauge: the last value written in the step.
type GaugePoint struct {
	Time  time.Time
	Value float64
	// OK is false for a step with no value.
	OK bool
}

// SetGauge stores v as the value of the gauge name for now's second (the
// last write in a second wins). Gauge names are free-form; the dashboard
// uses InstanceCPU and InstanceRSS.
func (s *Store) SetGauge(now time.Time, name string, v float64) {
	sec := now.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gauges[name]
	if g == nil {
		if len(s.gauges) >= s.opts.MaxGauges {
			s.evictGaugeLocked()
		}
		g = &gauge{}
		s.gauges[name] = g
	}
	i := sec % ringSeconds
	g.secs[i], g.vals[i] = sec, float32(v)
	if sec > g.last {
		g.last = sec
	}
}

// evictGaugeLocked drops the gauge written least recently.
func (s *Store) evictGaugeLocked() {
	var oldest string
	var at int64 = math.MaxInt64
	for name, g := range s.gauges {
		if g.last < at {
			oldest, at = name, g.last
		}
	}
	delete(s.gauges, oldest)
}

// DeleteGauge forgets the gauge name (for example when its instance stops).
func (s *Store) DeleteGauge(name string) {
	s.mu.Lock()
	delete(s.gauges, name)
	s.mu.Unlock()
}

// Gauge returns the gauge name over [from, to) in steps of step (at least a
// second); each step holds the latest value written in it.
func (s *Store) Gauge(name string, from, to time.Time, step time.Duration) []GaugePoint {
	stepSec := max(int64(step/time.Second), 1)
	fromSec, toSec := from.Unix(), to.Unix()
	if toSec-fromSec > ringSeconds {
		fromSec = toSec - ringSeconds
	}
	if toSec <= fromSec {
		return nil
	}
	pts := make([]GaugePoint, (toSec-fromSec+stepSec-1)/stepSec)
	for i := range pts {
		pts[i].Time = time.Unix(fromSec+int64(i)*stepSec, 0)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.gauges[name]
	if g == nil {
		return pts
	}
	for sec := fromSec; sec < toSec; sec++ {
		i := sec % ringSeconds
		if g.secs[i] != sec {
			continue
		}
		p := &pts[(sec-fromSec)/stepSec]
		p.Value, p.OK = float64(g.vals[i]), true
	}
	return pts
}

// InstanceCPU is the gauge name of an instance's CPU use, in cores (1.0 is
// one core busy).
func InstanceCPU(id string) string { return "instance/" + id + "/cpu" }

// InstanceRSS is the gauge name of an instance's resident memory, in bytes.
func InstanceRSS(id string) string { return "instance/" + id + "/rss" }
