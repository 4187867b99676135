package autoscale

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// PolicyValue is one policy's reading and proposal in a Decision: what
// shoal status shows against the target, and what the metrics export.
type PolicyValue struct {
	Name   string
	Kind   Kind
	Metric Metric
	// Value is the metric over the window (see Window.Value); meaningful
	// when OK.
	Value float64
	// Target is the policy's target; 0 for a step policy.
	Target float64
	// OK is false when the policy had no data; Note then says why.
	OK bool
	// Warm is the number of warmed-up instances the value was measured on.
	Warm int
	// Wants is the count the policy proposes; the current count when it
	// proposes no change.
	Wants int
	// Note explains the proposal: "p95 412ms > target 300ms",
	// "within tolerance", "no data: no warmed-up instance".
	Note string
	// Recent is true when the proposal is a scale-out seen over the
	// recent Config.OutWindow, larger than the one over Window; Value,
	// Wants and Note are then those of that look (for an additive metric,
	// Value is per instance in service, warmed up or not).
	Recent bool
}

// evaluate returns p's reading and proposal at now for a group of current
// desired instances: the proposal over Window, or the scale-out seen over
// OutWindow when that one wants more (see Config.OutWindow).
func (c *Config) evaluate(p Policy, w *Window, now time.Time, current int) PolicyValue {
	pv := c.evaluateWindow(p, w, now, current)
	if c.OutWindow <= 0 {
		return pv
	}
	if out, ok := c.evaluateRecent(p, w, now, current); ok && out.Wants > max(pv.Wants, current) {
		return out
	}
	return pv
}

// evaluateRecent returns p's scale-out proposal over the recent
// OutWindow, and false when that look proposes no scale-out.
func (c *Config) evaluateRecent(p Policy, w *Window, now time.Time, current int) (PolicyValue, bool) {
	r := w.Recent(p.Metric, now, c.OutWindow, c.Warmup)
	pv := PolicyValue{
		Name: p.label(), Kind: p.Kind, Metric: p.Metric, Target: p.Target,
		Value: r.Value, OK: r.OK, Warm: r.Warm, Wants: current, Recent: true,
	}
	n := float64(r.Warm) // warmed-up instances the value is per
	if p.Metric.additive() {
		n = float64(r.InService)
	}
	if !r.OK || n == 0 {
		return pv, false
	}
	span := fmt.Sprintf("in each of the last %s", c.OutWindow)
	if p.Kind == StepScaling {
		pv.Target = 0
		s, ok := p.stepFor(r.Value)
		if !ok || s.change(current) <= 0 {
			return pv, false
		}
		pv.Wants = current + s.change(current)
		pv.Note = fmt.Sprintf("%s %s in step %s %s", p.Metric.short(), formatValue(p.Metric, r.Value), s.describe(p.Metric), span)
		return pv, true
	}
	ratio := r.Value / p.Target
	if ratio-1 <= c.Tolerance {
		return pv, false
	}
	pv.Wants = ceilCount(n * ratio)
	pv.Note = fmt.Sprintf("%s %s > target %s %s", p.Metric.short(), formatValue(p.Metric, r.Value), formatValue(p.Metric, p.Target), span)
	if p.Metric.additive() {
		pv.Wants = ceilCount(r.Total / p.Target)
		pv.Note += fmt.Sprintf(" (%s in total on %d in service)", formatValue(p.Metric, r.Total), r.InService)
	}
	return pv, pv.Wants > current
}

// evaluateWindow returns p's reading and proposal over Window.
func (c *Config) evaluateWindow(p Policy, w *Window, now time.Time, current int) PolicyValue {
	r := w.Value(p.Metric, now, c.Warmup)
	pv := PolicyValue{
		Name: p.label(), Kind: p.Kind, Metric: p.Metric, Target: p.Target,
		Value: r.Value, OK: r.OK, Warm: r.Warm, Wants: current,
	}
	if p.Kind == StepScaling {
		pv.Target = 0
	}
	switch {
	case !r.OK:
		pv.Note = "no data: " + r.Why
		return pv
	case r.Warm == 0:
		pv.OK = false
		pv.Note = "no data: no warmed-up instance in service"
		return pv
	}
	if p.Kind == StepScaling {
		s, ok := p.stepFor(r.Value)
		if !ok {
			pv.Note = fmt.Sprintf("%s %s in no step", p.Metric.short(), formatValue(p.Metric, r.Value))
			return pv
		}
		pv.Wants = max(current+s.change(current), 0)
		pv.Note = fmt.Sprintf("%s %s in step %s", p.Metric.short(), formatValue(p.Metric, r.Value), s.describe(p.Metric))
		return pv
	}
	ratio := r.Value / p.Target
	if math.Abs(ratio-1) <= c.Tolerance {
		pv.Note = fmt.Sprintf("%s %s within %g%% of target %s", p.Metric.short(), formatValue(p.Metric, r.Value), c.Tolerance*100, formatValue(p.Metric, p.Target))
		return pv
	}
	// Instances not yet warmed up carry no load when scaling out and the
	// target load when scaling in (see the package doc).
	n := float64(r.Warm)
	notWarm := float64(max(current-r.Warm, 0))
	cmp, raw := ">", ceilCount(n*ratio)
	if ratio < 1 {
		cmp, raw = "<", ceilCount(n*ratio+notWarm)
	}
	pv.Note = fmt.Sprintf("%s %s %s target %s", p.Metric.short(), formatValue(p.Metric, r.Value), cmp, formatValue(p.Metric, p.Target))
	switch {
	case ratio > 1 && raw <= current:
		pv.Note += fmt.Sprintf(" (covered by %d not warmed up)", int(notWarm))
	case ratio < 1 && raw >= current && notWarm > 0:
		pv.Note += fmt.Sprintf(" (kept for %d not warmed up)", int(notWarm))
	case ratio < 1 && raw >= current:
		pv.Note += fmt.Sprintf(" (rounds to %d)", raw)
	default:
		pv.Wants = raw
	}
	return pv
}

// ceilCount rounds a count up, forgiving float noise (8.0000000001 is 8),
// and bounds it to maxCount.
func ceilCount(x float64) int {
	if !(x < maxCount) { // also NaN
		return maxCount
	}
	return int(math.Ceil(x - 1e-9))
}

// formatValue formats v in m's unit: "412ms", "92%", "84.2".
func formatValue(m Metric, v float64) string {
	switch {
	case m.isLatency():
		if v >= math.MaxInt64/1e9 {
			return strconv.FormatFloat(v, 'g', 3, 64) + "s"
		}
		d := time.Duration(v * float64(time.Second))
		if d < time.Millisecond {
			return d.Round(time.Microsecond).String()
		}
		return d.Round(time.Millisecond).String()
	case m == CPU:
		return strconv.FormatFloat(math.Round(v*100), 'f', -1, 64) + "%"
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// describe formats s with bounds in m's unit: "[300ms, 500ms): +2".
func (s Step) describe(m Metric) string {
	b := func(v float64) string {
		if math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return formatValue(m, v)
	}
	adj := fmt.Sprintf("%+d", s.Adjust)
	if s.Percent {
		adj += "%"
	}
	return fmt.Sprintf("[%s, %s): %s", b(s.Lower), b(s.Upper), adj)
}

// round formats d to whole seconds for reasons ("3m12s"), rounding up so
// that "0s left" is never shown while something is still left.
func round(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return ((d + time.Second - 1) / time.Second * time.Second).String()
}
