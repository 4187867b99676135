package autoscale

import (
	"fmt"
	"time"
)

// additive reports whether m adds up across instances, so that the
// group's demand is the sum over every instance in service, however the
// balancer spread it: requests per second and requests in flight. CPU and
// latency do not add up that way (and a fresh process inflates both).
func (m Metric) additive() bool { return m == RPSPerInstance || m == InFlightPerInstance }

// Recent reads metric m for the scale-out look (Config.OutWindow): the
// lowest of its values over each sample interval (a, b] with b in
// (now-span, now], so the value holds only if the metric was at least that
// high in every interval of the span. One busy second therefore does not
// scale out; a step of load that lasts the span does.
//
// For additive metrics (RPSPerInstance, InFlightPerInstance) every
// instance in service counts, warmed up or not, and Total is the group's
// total (requests per second, requests in flight): the demand measured at
// the balancer, which does not change when the balancer spreads it over
// new instances. An instance that entered service within an interval
// counts its whole counter there (counters start at zero; see Sample).
// Value is then Total divided by the instances in service at the
// interval's end. For CPU and latency, only warmed-up instances count, as
// in Value, and Total is 0.
//
// Warm and InService are those of the latest sample. OK is false when
// any interval of the span has no data, or the span holds no interval.
func (w *Window) Recent(m Metric, now time.Time, span, warmup time.Duration) Reading {
	first, last := w.span(now, span)
	if last < 0 {
		return Reading{Why: fmt.Sprintf("no samples in the last %s", span)}
	}
	var best Reading
	found := false
	for i := max(first, 1); i <= last; i++ {
		var r Reading
		if m.additive() {
			r = w.total(m, i)
		} else {
			r = w.aggregate(m, i, i, warmup)
		}
		if !r.OK {
			return r
		}
		if !found || key(m, r) < key(m, best) {
			best, found = r, true
		}
	}
	if !found {
		return Reading{Why: "one sample only"}
	}
	latest := w.aggregate(m, last, last, warmup) // for the counts only
	best.Warm, best.InService = latest.Warm, latest.InService
	return best
}

// key is what Recent minimizes: the total of an additive metric, else the
// value.
func key(m Metric, r Reading) float64 {
	if m.additive() {
		return r.Total
	}
	return r.Value
}

// total is the group's total of additive metric m over the interval
// ending at sample i (i >= 1), over every instance in service at its end.
func (w *Window) total(m Metric, i int) Reading {
	a, b := w.samples[i-1], w.samples[i]
	var r Reading
	prev := make(map[string]InstanceSample, len(a.Instances))
	for _, in := range a.Instances {
		prev[in.ID] = in
	}
	var requests, inFlight float64
	for _, in := range b.Instances {
		if in.InService.IsZero() {
			continue
		}
		r.InService++
		inFlight += float64(in.InFlight)
		old, ok := prev[in.ID]
		switch {
		case ok && old.InService.Equal(in.InService):
			requests += float64(increase(old.Requests, in.Requests))
		case in.InService.After(a.Time):
			requests += float64(in.Requests) // entered service within (a, b]
		}
	}
	if r.InService == 0 {
		r.Why = "no instance in service"
		return r
	}
	r.OK = true
	switch m {
	case RPSPerInstance:
		r.Total = requests / b.Time.Sub(a.Time).Seconds()
	case InFlightPerInstance:
		r.Total = inFlight
	}
	r.Value = r.Total / float64(r.InService)
	return r
}
