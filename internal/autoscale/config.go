package autoscale

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// maxCount bounds Min, Max and step sizes so that no arithmetic on counts
// can overflow.
const maxCount = 100000

// Config is the auto-scaling configuration of one group. Fields mean what
// they hold: zero is zero, not "default". Start from [DefaultConfig] and
// override what the operator wrote.
type Config struct {
	// Min and Max bound the desired count; every Decision is within them.
	Min, Max int

	// Policies are evaluated together: out if any wants more, in only if
	// all want fewer. None means only manual and scheduled changes.
	Policies []Policy

	// Schedules set Min, Max or desired at cron times; see Timetable.
	Schedules []Schedule

	// Interval is how often the controller calls Decide (default 500ms). The
	// strategy does not tick by itself; it uses Interval only to check
	// that Window spans several evaluations.
	Interval time.Duration

	// Window is how far back metrics are aggregated (default 5s): short
	// enough to react in seconds, long enough that one slow request or an
	// idle second does not move the group.
	Window time.Duration

	// OutWindow is the short, recent span a scale-out also looks at
	// (default 1s, two intervals): a policy proposes the larger of its
	// proposal over Window and its proposal over OutWindow, where the
	// OutWindow value is the lowest per-interval value of that span (see
	// Window.Recent). A step of load is thus answered with the count it
	// needs as soon as it has lasted OutWindow, instead of once it has
	// filled a fraction of Window; one busy second is not enough. For
	// rps_per_instance and inflight_per_instance the OutWindow proposal is
	// the group's total over every instance in service divided by the
	// target, which does not change while new instances warm up and take
	// their share, so it never counts the same load twice. Scale-in uses
	// Window and Stabilization only. Zero turns the recent look off; else
	// it must be within [Interval, Window].
	OutWindow time.Duration

	// Tolerance is the band around a target within which a policy
	// proposes no change: |value/target - 1| <= Tolerance (default 0.1,
	// as the Kubernetes HPA). Must be in [0, 1).
	Tolerance float64

	// MaxStepUp and MaxFactorUp bound one scale-out: from n instances to
	// at most max(n + MaxStepUp, ceil(n * MaxFactorUp)). Defaults +4 and
	// x2 (the HPA's default scale-up policy), so 1 -> 5 -> 10 -> 20.
	MaxStepUp   int
	MaxFactorUp float64

	// MaxStepDown bounds one scale-in (default 1 instance): removing
	// instances slowly gives each drain time to finish and the metrics
	// time to show the effect before the next one.
	MaxStepDown int

	// Stabilization is how long every recommendation must have been
	// below the current count before a scale-in, which then goes to the
	// highest recommendation of that time (default 5m, the HPA's
	// scale-down stabilization). Zero scales in as soon as all policies
	// agree.
	Stabilization time.Duration

	// CooldownOut is the longest time between two scale-outs (default
	// 10s): the next step waits until every instance of the group's
	// desired count is in service, or until CooldownOut has passed,
	// whichever is first (a launch that fails does not block growth for
	// longer). The target-tracking rules already ignore capacity that is
	// launching or warming up (or measure the total demand, see
	// OutWindow), so the cooldown only paces the bounded steps: each one
	// is decided on the metrics of a group that has the previous one in
	// service. 1 -> 5 -> 10 -> 20 then takes three boot times rather
	// than 20s. When a step policy wants the scale-out, the full
	// CooldownOut applies: a step policy adds its adjustment to whatever
	// is there, and its value lags while the new instances warm up.
	// (AWS Application Auto Scaling's target tracking likewise lets a
	// larger scale-out through during its scale-out cooldown, counting the
	// capacity already added; Shoal bounds each step and waits for it to
	// serve instead.)
	CooldownOut time.Duration

	// CooldownIn is the least time between two scale-ins (default 30s,
	// the default drain timeout), so one drain ends before the next
	// begins. A scale-out never waits for CooldownIn.
	CooldownIn time.Duration

	// Warmup is how long an instance is in service before its metrics
	// count (default 15s): a fresh process is slow and busy (JIT, caches)
	// and would otherwise ask for more capacity than the load needs.
	Warmup time.Duration
}

// DefaultConfig returns a Config with every default set, Min 1, Max 1 and
// no policies.
func DefaultConfig() Config {
	return Config{
		Min:           1,
		Max:           1,
		Interval:      500 * time.Millisecond,
		Window:        5 * time.Second,
		OutWindow:     time.Second,
		Tolerance:     0.1,
		MaxStepUp:     4,
		MaxFactorUp:   2,
		MaxStepDown:   1,
		Stabilization: 5 * time.Minute,
		CooldownOut:   10 * time.Second,
		CooldownIn:    30 * time.Second,
		Warmup:        15 * time.Second,
	}
}

// Problem is one thing wrong with a Config. Path is the field's path in
// snake_case as written under a group's autoscale section of shoal.yaml,
// such as "policies[1].target" or "schedules[0].cron".
type Problem struct {
	Path string
	Msg  string
}

// String formats p as "path: message".
func (p Problem) String() string { return p.Path + ": " + p.Msg }

// Problems is every problem found in a Config, in field order. It is the
// error returned by Validate and NewScaler.
type Problems []Problem

// Error returns one problem per line.
func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

func (ps *Problems) add(path, format string, a ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, a...)})
}

// Validate reports every problem of c at once, as Problems, or nil.
func (c Config) Validate() error {
	var ps Problems
	if c.Min < 0 || c.Min > maxCount {
		ps.add("min", "min must be within 0 and %d, got %d", maxCount, c.Min)
	}
	if c.Max < 1 || c.Max > maxCount {
		ps.add("max", "max must be within 1 and %d, got %d", maxCount, c.Max)
	} else if c.Max < c.Min {
		ps.add("max", "max %d is below min %d", c.Max, c.Min)
	}
	if c.Interval <= 0 {
		ps.add("interval", "interval must be > 0, got %s", c.Interval)
	}
	if c.Window <= 0 {
		ps.add("window", "window must be > 0, got %s", c.Window)
	} else if c.Interval > 0 && c.Window < 2*c.Interval {
		ps.add("window", "window %s must span at least two intervals (%s)", c.Window, 2*c.Interval)
	}
	windowOK := c.Interval > 0 && c.Window >= 2*c.Interval
	if c.OutWindow < 0 || (c.OutWindow > 0 && windowOK && (c.OutWindow < c.Interval || c.OutWindow > c.Window)) {
		ps.add("out_window", "out_window must be 0 or within interval %s and window %s, got %s", c.Interval, c.Window, c.OutWindow)
	}
	if math.IsNaN(c.Tolerance) || c.Tolerance < 0 || c.Tolerance >= 1 {
		ps.add("tolerance", "tolerance must be within 0 and 1 (exclusive), got %g", c.Tolerance)
	}
	if c.MaxStepUp < 1 || c.MaxStepUp > maxCount {
		ps.add("max_step_up", "max_step_up must be within 1 and %d, got %d", maxCount, c.MaxStepUp)
	}
	if math.IsNaN(c.MaxFactorUp) || c.MaxFactorUp < 1 || c.MaxFactorUp > 100 {
		ps.add("max_factor_up", "max_factor_up must be within 1 and 100, got %g", c.MaxFactorUp)
	}
	if c.MaxStepDown < 1 || c.MaxStepDown > maxCount {
		ps.add("max_step_down", "max_step_down must be within 1 and %d, got %d", maxCount, c.MaxStepDown)
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"stabilization", c.Stabilization},
		{"cooldown_out", c.CooldownOut},
		{"cooldown_in", c.CooldownIn},
		{"warmup", c.Warmup},
	} {
		if d.v < 0 {
			ps.add(d.path, "%s must not be negative, got %s", d.path, d.v)
		}
	}
	seen := map[string]int{}
	for i, p := range c.Policies {
		prefix := fmt.Sprintf("policies[%d]", i)
		p.validate(prefix, &ps)
		if j, dup := seen[p.label()]; dup {
			ps.add(prefix+".name", "name %q is already used by policies[%d]", p.label(), j)
		} else {
			seen[p.label()] = i
		}
	}
	for i, s := range c.Schedules {
		s.validate(fmt.Sprintf("schedules[%d]", i), &ps)
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}
