package autoscale

import (
	"errors"
	"fmt"
	"time"
)

// maxSamples bounds a Window's memory whatever the rate of Add.
const maxSamples = 4096

// ErrOutOfOrder is returned by Window.Add for a sample that is not newer
// than the last one added.
var ErrOutOfOrder = errors.New("sample is not newer than the last one")

// Window holds the samples of the last Size of time and aggregates them
// into metric values. It keeps one sample older than Size as the baseline
// of the cumulative counters. A Window is not safe for concurrent use; the
// controller's loop owns it. The zero Window is not usable; use NewWindow.
type Window struct {
	size    time.Duration
	samples []Sample // ascending Time
}

// NewWindow returns an empty Window spanning size (Config.Window).
func NewWindow(size time.Duration) *Window {
	return &Window{size: size}
}

// Size returns the span the Window aggregates over.
func (w *Window) Size() time.Duration { return w.size }

// Len returns the number of samples held, baseline included.
func (w *Window) Len() int { return len(w.samples) }

// Add appends s, which must be newer than the last sample added (else
// ErrOutOfOrder), and drops the samples no longer needed. The Window keeps
// s, including its slices: the caller must not modify them afterwards.
func (w *Window) Add(s Sample) error {
	if n := len(w.samples); n > 0 && !s.Time.After(w.samples[n-1].Time) {
		return fmt.Errorf("add sample at %s after %s: %w", s.Time.Format(time.RFC3339Nano), w.samples[n-1].Time.Format(time.RFC3339Nano), ErrOutOfOrder)
	}
	w.samples = append(w.samples, s)
	cut := s.Time.Add(-w.size)
	drop := 0
	// Keep the newest sample at or before cut as the baseline.
	for drop+1 < len(w.samples) && !w.samples[drop+1].Time.After(cut) {
		drop++
	}
	if extra := len(w.samples) - drop - maxSamples; extra > 0 {
		drop += extra
	}
	if drop > 0 {
		n := copy(w.samples, w.samples[drop:])
		clear(w.samples[n:])
		w.samples = w.samples[:n]
	}
	return nil
}

// Reading is a metric's value over a Window at one time.
type Reading struct {
	// Value is the metric's value (see Window.Value); meaningful when OK.
	Value float64
	// OK is false when there is no data to compute Value from; Why then
	// says what is missing.
	OK  bool
	Why string
	// Warm is the number of warmed-up instances in the latest sample: the
	// n of desired = ceil(n * value / target).
	Warm int
	// InService is the number of in-service instances in the latest
	// sample, warmed up or not.
	InService int
	// Requests is the number of requests the value is based on (for
	// latency percentiles).
	Requests uint64
	// Total is the group's total of an additive metric (requests per
	// second, requests in flight) over every instance in service; set by
	// Window.Recent only.
	Total float64
}

// Value aggregates metric m over the samples of (now-Size, now], counting
// only instances that have been in service for warmup at the start of
// each interval:
//
//   - RPSPerInstance: requests completed by warmed-up instances, divided
//     by their instance-seconds (the sum over sample intervals of the
//     number of warmed-up instances times the interval). Instances that
//     come or go within the window weigh for the time they were there.
//   - CPU: CPU seconds of warmed-up instances per instance-second.
//   - InFlightPerInstance: the in-flight requests of warmed-up instances
//     summed over the window's samples, divided by the number of
//     (instance, sample) pairs.
//   - LatencyP95, LatencyP99: the percentile of the merged histogram of
//     all requests completed by warmed-up instances in the window, not the
//     largest per-second percentile, which a second with two requests
//     would make noisy. With warmed-up instances observed but no request
//     completed, the value is 0: idle is data, and lets the group scale in.
//
// With no sample in the window or no warmed-up instance, OK is false.
func (w *Window) Value(m Metric, now time.Time, warmup time.Duration) Reading {
	first, last := w.span(now, w.size)
	if last < 0 {
		return Reading{Why: fmt.Sprintf("no samples in the last %s", w.size)}
	}
	return w.aggregate(m, first, last, warmup)
}

// span returns the indexes of the first and last samples in (now-d, now],
// or -1, -1 when there is none.
func (w *Window) span(now time.Time, d time.Duration) (first, last int) {
	from := now.Add(-d)
	first, last = -1, -1
	for i, s := range w.samples {
		if s.Time.After(now) {
			break
		}
		if s.Time.After(from) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// aggregate is Value over the samples first..last (and the baseline
// before first, when there is one), counting warmed-up instances only.
func (w *Window) aggregate(m Metric, first, last int, warmup time.Duration) Reading {
	warm := func(in InstanceSample, t time.Time) bool {
		return !in.InService.IsZero() && t.Sub(in.InService) >= warmup
	}
	var r Reading
	for _, in := range w.samples[last].Instances {
		if in.InService.IsZero() {
			continue
		}
		r.InService++
		if warm(in, w.samples[last].Time) {
			r.Warm++
		}
	}

	if m == InFlightPerInstance {
		var sum float64
		var n int
		for _, s := range w.samples[first : last+1] {
			for _, in := range s.Instances {
				if warm(in, s.Time) {
					sum += float64(in.InFlight)
					n++
				}
			}
		}
		if n == 0 {
			r.Why = "no warmed-up instance"
			return r
		}
		r.Value, r.OK = sum/float64(n), true
		return r
	}

	// Counters: sum the increase over each interval (a, b] with b in the
	// window; a is the baseline before the window when there is one.
	start := max(first-1, 0)
	var (
		requests, instSec  float64
		cpu, cpuSec        float64
		hist               []uint64
		bounds             []float64
		histSeen, anyPairs bool
	)
	prev := map[string]InstanceSample{}
	for i := start; i < last; i++ {
		a, b := w.samples[i], w.samples[i+1]
		clear(prev)
		for _, in := range a.Instances {
			prev[in.ID] = in
		}
		dt := b.Time.Sub(a.Time).Seconds()
		for _, in := range b.Instances {
			old, ok := prev[in.ID]
			if !ok || !old.InService.Equal(in.InService) || !warm(old, a.Time) {
				continue
			}
			anyPairs = true
			requests += float64(increase(old.Requests, in.Requests))
			instSec += dt
			if old.HasCPU && in.HasCPU {
				d := in.CPUSeconds - old.CPUSeconds
				if d < 0 {
					d = in.CPUSeconds
				}
				cpu += d
				cpuSec += dt
			}
			if old.Latency.valid() && in.Latency.valid() && sameBounds(old.Latency.Bounds, in.Latency.Bounds) {
				if hist == nil {
					bounds = in.Latency.Bounds
					hist = make([]uint64, len(in.Latency.Counts))
				}
				if !sameBounds(bounds, in.Latency.Bounds) {
					continue
				}
				histSeen = true
				addIncrease(hist, old.Latency.Counts, in.Latency.Counts)
			}
		}
	}
	if !anyPairs {
		r.Why = "no warmed-up instance"
		if last == start {
			r.Why = "one sample only"
		}
		return r
	}
	switch m {
	case RPSPerInstance:
		r.Value, r.OK = requests/instSec, true
	case CPU:
		if cpuSec == 0 {
			r.Why = "no CPU data"
			return r
		}
		r.Value, r.OK = cpu/cpuSec, true
	case LatencyP95, LatencyP99:
		if !histSeen {
			r.Why = "no latency data"
			return r
		}
		q := 0.95
		if m == LatencyP99 {
			q = 0.99
		}
		for _, c := range hist {
			r.Requests += c
		}
		r.Value, r.OK = quantile(bounds, hist, q), true
	default:
		r.Why = fmt.Sprintf("unknown metric %s", m)
	}
	return r
}

// increase returns the growth of a counter from a to b, taking a decrease
// as a reset to zero in between.
func increase(a, b uint64) uint64 {
	if b < a {
		return b
	}
	return b - a
}

// addIncrease adds the growth of each bucket from a to b to sum; if any
// bucket decreased, the histogram was reset and b is added whole.
func addIncrease(sum, a, b []uint64) {
	for i := range b {
		if b[i] < a[i] {
			for j := range b {
				sum[j] += b[j]
			}
			return
		}
	}
	for i := range b {
		sum[i] += b[i] - a[i]
	}
}
