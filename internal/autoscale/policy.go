package autoscale

import (
	"fmt"
	"math"
	"strings"
)

// Metric names a signal a policy tracks. Metrics are persisted and written
// in shoal.yaml by their String form.
type Metric uint8

// The metrics. Every value is computed over warmed-up instances only (see
// [Window.Value]).
const (
	// RPSPerInstance is completed requests per second per instance.
	RPSPerInstance Metric = iota + 1
	// LatencyP95 is the 95th percentile of request latency, in seconds,
	// over all requests of the window.
	LatencyP95
	// LatencyP99 is the 99th percentile of request latency, in seconds.
	LatencyP99
	// InFlightPerInstance is the average number of requests in flight per
	// instance.
	InFlightPerInstance
	// CPU is the CPU time of an instance's processes per second of wall
	// time: 1.0 is one core fully busy; it can exceed 1 on several cores.
	CPU
)

var metricNames = map[Metric]string{
	RPSPerInstance:      "rps_per_instance",
	LatencyP95:          "latency_p95",
	LatencyP99:          "latency_p99",
	InFlightPerInstance: "inflight_per_instance",
	CPU:                 "cpu",
}

// String returns the configuration name of m, such as "latency_p95", or
// "metric(N)" for an unknown value.
func (m Metric) String() string {
	if s, ok := metricNames[m]; ok {
		return s
	}
	return fmt.Sprintf("metric(%d)", uint8(m))
}

// ParseMetric returns the Metric named s (its String form).
func ParseMetric(s string) (Metric, error) {
	for m, name := range metricNames {
		if name == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown metric %q (want rps_per_instance, latency_p95, latency_p99, inflight_per_instance or cpu)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Metric) MarshalText() ([]byte, error) {
	if _, ok := metricNames[m]; !ok {
		return nil, fmt.Errorf("marshal metric: unknown metric %d", uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Metric) UnmarshalText(b []byte) error {
	v, err := ParseMetric(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// short is the metric's name in decision reasons.
func (m Metric) short() string {
	switch m {
	case RPSPerInstance:
		return "rps/instance"
	case LatencyP95:
		return "p95"
	case LatencyP99:
		return "p99"
	case InFlightPerInstance:
		return "in-flight/instance"
	case CPU:
		return "cpu"
	}
	return m.String()
}

// Unit names the unit of m's values in Prometheus' style, for metric
// names: "requests_per_second" (rps_per_instance), "seconds" (latency),
// "requests" (requests in flight) or "cores" (cpu); "" for an unknown m.
func (m Metric) Unit() string {
	switch m {
	case RPSPerInstance:
		return "requests_per_second"
	case LatencyP95, LatencyP99:
		return "seconds"
	case InFlightPerInstance:
		return "requests"
	case CPU:
		return "cores"
	}
	return ""
}

// isLatency reports whether values of m are seconds.
func (m Metric) isLatency() bool { return m == LatencyP95 || m == LatencyP99 }

// Kind is how a policy turns its metric into a proposal.
type Kind uint8

const (
	// TargetTracking keeps the metric near Policy.Target:
	// desired = ceil(n * value / target).
	TargetTracking Kind = iota
	// StepScaling adds or removes capacity by the adjustment of the step
	// the metric's value falls in.
	StepScaling
)

// String returns "target_tracking" or "step".
func (k Kind) String() string {
	switch k {
	case TargetTracking:
		return "target_tracking"
	case StepScaling:
		return "step"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind returns the Kind named s (its String form).
func ParseKind(s string) (Kind, error) {
	switch s {
	case "target_tracking":
		return TargetTracking, nil
	case "step":
		return StepScaling, nil
	}
	return 0, fmt.Errorf("unknown policy kind %q (want target_tracking or step)", s)
}

// Policy is one scaling rule of a group. The zero Kind is target tracking.
type Policy struct {
	// Name identifies the policy in decisions, events and status. Empty
	// means the metric's name; names must be unique within a Config.
	Name string
	// Kind is TargetTracking (default) or StepScaling.
	Kind Kind
	// Metric is the signal the policy reads.
	Metric Metric
	// Target is the value to keep the metric at, for TargetTracking: in
	// requests per second, seconds of latency, requests in flight, or
	// cores (0.6 is 60% of one core), per the metric. Must be > 0.
	Target float64
	// Steps are the bands of a StepScaling policy, non-overlapping; a
	// value in no band proposes no change.
	Steps []Step
}

// Step is one band of a step-scaling policy: when Lower <= value < Upper,
// the policy proposes the current count changed by Adjust. Use
// math.Inf(-1) and math.Inf(1) for open ends.
type Step struct {
	Lower, Upper float64
	// Adjust is the change: +2 adds two instances, -1 removes one. With
	// Percent it is a percentage of the current count (+50 adds half,
	// -25 removes a quarter), rounded away from zero to a whole instance.
	Adjust  int
	Percent bool
}

// label is the policy's name in decisions: Name, or the metric's name.
func (p Policy) label() string {
	if p.Name != "" {
		return p.Name
	}
	return p.Metric.String()
}

// change returns the number of instances s adds to (or, negative, removes
// from) current.
func (s Step) change(current int) int {
	if !s.Percent {
		return s.Adjust
	}
	v := math.Ceil(math.Abs(float64(s.Adjust)) * float64(current) / 100)
	if v < 1 {
		v = 1
	}
	if s.Adjust < 0 {
		return -int(v)
	}
	return int(v)
}

// String formats s as "[lower, upper): +n".
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%g, %g): %+d", s.Lower, s.Upper, s.Adjust)
	if s.Percent {
		b.WriteByte('%')
	}
	return b.String()
}

// validate appends p's problems to ps, with field paths under prefix.
func (p Policy) validate(prefix string, ps *Problems) {
	if _, ok := metricNames[p.Metric]; !ok {
		ps.add(prefix+".metric", "unknown metric %s (want rps_per_instance, latency_p95, latency_p99, inflight_per_instance or cpu)", p.Metric)
	}
	switch p.Kind {
	case TargetTracking:
		if !(p.Target > 0) || math.IsInf(p.Target, 0) {
			ps.add(prefix+".target", "target must be a number > 0, got %g", p.Target)
		}
		if len(p.Steps) > 0 {
			ps.add(prefix+".steps", "steps belong to a step policy, not target_tracking")
		}
	case StepScaling:
		if p.Target != 0 {
			ps.add(prefix+".target", "a step policy has steps, not a target")
		}
		if len(p.Steps) == 0 {
			ps.add(prefix+".steps", "a step policy needs at least one step")
		}
		for i, s := range p.Steps {
			sp := fmt.Sprintf("%s.steps[%d]", prefix, i)
			if math.IsNaN(s.Lower) || math.IsInf(s.Lower, 1) {
				ps.add(sp+".lower", "lower must be a number or -inf, got %g", s.Lower)
			}
			if math.IsNaN(s.Upper) || math.IsInf(s.Upper, -1) {
				ps.add(sp+".upper", "upper must be a number or +inf, got %g", s.Upper)
			}
			if !math.IsNaN(s.Lower) && !math.IsNaN(s.Upper) && !(s.Lower < s.Upper) {
				ps.add(sp, "lower %g must be below upper %g", s.Lower, s.Upper)
			}
			switch {
			case s.Adjust == 0:
				ps.add(sp+".adjust", "adjust must not be 0")
			case s.Percent && (s.Adjust < -100 || s.Adjust > 1000):
				ps.add(sp+".adjust", "a percent adjustment must be within -100%% and +1000%%, got %d%%", s.Adjust)
			case !s.Percent && (s.Adjust < -maxCount || s.Adjust > maxCount):
				ps.add(sp+".adjust", "adjust must be within -%d and +%d, got %d", maxCount, maxCount, s.Adjust)
			}
			for j := range i {
				o := p.Steps[j]
				if s.Lower < o.Upper && o.Lower < s.Upper {
					ps.add(sp, "overlaps steps[%d] %s", j, o)
				}
			}
		}
	default:
		ps.add(prefix+".kind", "unknown kind %s (want target_tracking or step)", p.Kind)
	}
}

// stepFor returns the step value falls in.
func (p Policy) stepFor(value float64) (Step, bool) {
	for _, s := range p.Steps {
		if s.Lower <= value && value < s.Upper {
			return s, true
		}
	}
	return Step{}, false
}
