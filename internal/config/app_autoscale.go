package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/autoscale"
)

// AppAutoscale is the "autoscale:" section of shoal.yaml: policies that
// change the group's desired count from the traffic measured at Shoal's own
// balancer, within group.min and group.max. Absent means no auto scaling:
// only `shoal scale` changes the count. Every field has a default; see
// autoscale.DefaultConfig for what each one does.
type AppAutoscale struct {
	// Interval is how often the policies are evaluated; default 1s.
	Interval Duration `yaml:"interval"`

	// Window is how far back the metrics are aggregated; default 5s. It
	// must span at least two intervals.
	Window Duration `yaml:"window"`

	// OutWindow is the recent span a scale-out also looks at: the load
	// must be above target in each interval of it; default two intervals
	// (within window). 0 turns it off. See autoscale.Config.OutWindow.
	OutWindow Duration `yaml:"out_window"`

	// Tolerance is the band around a target within which nothing changes,
	// as a fraction (0.1 = 10%, the default) or a percentage ("10%").
	Tolerance string `yaml:"tolerance"`

	// MaxStepUp and MaxFactorUp bound one scale-out: from n instances to
	// at most max(n + max_step_up, n * max_factor_up). Defaults 4 and 2.
	MaxStepUp   int     `yaml:"max_step_up"`
	MaxFactorUp float64 `yaml:"max_factor_up"`

	// MaxStepDown bounds one scale-in; default 1 instance.
	MaxStepDown int `yaml:"max_step_down"`

	// Stabilization is how long every policy must have wanted fewer
	// instances before a scale-in; default 5m. 0 scales in at once.
	Stabilization Duration `yaml:"stabilization"`

	// CooldownOut and CooldownIn are the least time between two changes
	// in the same direction; defaults 10s and 30s.
	CooldownOut Duration `yaml:"cooldown_out"`
	CooldownIn  Duration `yaml:"cooldown_in"`

	// Warmup is how long a new instance is in service before its metrics
	// count; default 15s.
	Warmup Duration `yaml:"warmup"`

	// Policies are evaluated together: the group scales out if any wants
	// more, and in only if all want fewer.
	Policies []AppScalePolicy `yaml:"policies"`

	// Schedules set min, max or desired at cron times.
	Schedules []AppScaleSchedule `yaml:"schedules"`
}

// AppScalePolicy is one scaling policy.
type AppScalePolicy struct {
	// Name identifies the policy in events, status and metrics; default
	// the metric's name.
	Name string `yaml:"name"`

	// Kind is target_tracking (default) or step.
	Kind string `yaml:"kind"`

	// Metric is rps_per_instance, latency_p95, latency_p99,
	// inflight_per_instance or cpu. Latency is measured for the whole
	// pool at the balancer (every in-service instance's requests).
	Metric string `yaml:"metric"`

	// Target is the value to keep the metric at (target_tracking): a
	// number of requests per second or in flight per instance, a duration
	// for latency ("300ms"), or cores for cpu ("0.6" or "60%").
	Target string `yaml:"target"`

	// Steps are the bands of a step policy.
	Steps []AppScaleStep `yaml:"steps"`
}

// AppScaleStep is one band of a step policy: when lower <= value < upper,
// the count changes by adjust. Values are written like a policy's target;
// an absent lower or upper is an open end ("-inf", "inf" also work).
type AppScaleStep struct {
	Lower string `yaml:"lower"`
	Upper string `yaml:"upper"`
	// Adjust is "+2", "-1" or a percentage of the current count such as
	// "+50%" (rounded away from zero to a whole instance).
	Adjust string `yaml:"adjust"`
}

// AppScaleSchedule is a scheduled action: at the times of Cron, in
// TimeZone, set the group's min, max and/or desired count.
type AppScaleSchedule struct {
	// Name identifies the schedule in events; default the cron expression.
	Name string `yaml:"name"`
	// Cron is a five-field crontab expression such as "0 8 * * 1-5", or
	// @daily, @hourly, ...
	Cron string `yaml:"cron"`
	// TimeZone is an IANA zone such as "Europe/Paris"; default UTC.
	TimeZone string `yaml:"time_zone"`
	// Min, Max and Desired are the values to set; absent ones are kept.
	Min     *int `yaml:"min"`
	Max     *int `yaml:"max"`
	Desired *int `yaml:"desired"`
}

// AutoscaleEnabled reports whether the file has an autoscale section.
func (a *App) AutoscaleEnabled() bool { return a.Autoscale != nil }

// AutoscaleConfig returns the auto-scaling configuration of the group:
// autoscale.DefaultConfig with group.min and group.max and what the
// autoscale section sets. On an App returned by Load or Parse it is valid.
// Without an autoscale section it has no policies and no schedules.
func (a *App) AutoscaleConfig() autoscale.Config {
	cfg, _ := a.autoscaleConfig(nil)
	return cfg
}

// checkAutoscale converts and validates the autoscale section, reporting
// every problem in d with its position.
func (a *App) checkAutoscale(d *document) {
	a.autoscaleDefaults(d)
	cfg, _ := a.autoscaleConfig(d)
	if a.Autoscale == nil {
		return
	}
	// Validate even after a conversion problem, to report every problem
	// at once; check skips the paths conversion already reported.
	c := &appChecker{a: a, d: d}
	if c.failed("group.min") || c.failed("group.max") {
		return // min and max are group's; already reported
	}
	err := cfg.Validate()
	ps, _ := err.(autoscale.Problems)
	for _, p := range ps {
		path := "autoscale." + p.Path
		if p.Path == "min" || p.Path == "max" {
			path = "group." + p.Path
		}
		c.check(true, path, "%s", p.Msg)
	}
}

// autoscaleDefaults fills the settings the autoscale section left out
// with autoscale.DefaultConfig's.
func (a *App) autoscaleDefaults(d *document) {
	s := a.Autoscale
	if s == nil {
		return
	}
	def := autoscale.DefaultConfig()
	set := func(key string, apply func()) {
		if !d.has("autoscale." + key) {
			apply()
		}
	}
	set("interval", func() { s.Interval = Duration(def.Interval) })
	set("window", func() { s.Window = Duration(def.Window) })
	set("out_window", func() { s.OutWindow = min(2*s.Interval, s.Window) })
	set("tolerance", func() { s.Tolerance = strconv.FormatFloat(def.Tolerance, 'g', -1, 64) })
	set("max_step_up", func() { s.MaxStepUp = def.MaxStepUp })
	set("max_factor_up", func() { s.MaxFactorUp = def.MaxFactorUp })
	set("max_step_down", func() { s.MaxStepDown = def.MaxStepDown })
	set("stabilization", func() { s.Stabilization = Duration(def.Stabilization) })
	set("cooldown_out", func() { s.CooldownOut = Duration(def.CooldownOut) })
	set("cooldown_in", func() { s.CooldownIn = Duration(def.CooldownIn) })
	set("warmup", func() { s.Warmup = Duration(def.Warmup) })
}

// autoscaleConfig builds the autoscale.Config. With a non-nil d, problems
// of conversion are reported there; ok is false when there were any.
func (a *App) autoscaleConfig(d *document) (cfg autoscale.Config, ok bool) {
	cfg = autoscale.DefaultConfig()
	cfg.Min, cfg.Max = a.Group.Min, a.Group.Max
	s := a.Autoscale
	if s == nil {
		return cfg, true
	}
	ok = true
	bad := func(path, format string, args ...any) {
		ok = false
		if d != nil {
			(&appChecker{a: a, d: d}).check(true, path, format, args...)
		}
	}
	cfg.Interval, cfg.Window, cfg.OutWindow = s.Interval.D(), s.Window.D(), s.OutWindow.D()
	if s.Tolerance != "" {
		v, err := parseFraction(s.Tolerance)
		if err != nil {
			bad("autoscale.tolerance", "%v", err)
		}
		cfg.Tolerance = v
	}
	cfg.MaxStepUp, cfg.MaxFactorUp, cfg.MaxStepDown = s.MaxStepUp, s.MaxFactorUp, s.MaxStepDown
	cfg.Stabilization, cfg.Warmup = s.Stabilization.D(), s.Warmup.D()
	cfg.CooldownOut, cfg.CooldownIn = s.CooldownOut.D(), s.CooldownIn.D()
	for i, p := range s.Policies {
		pol, perr := convertPolicy(p, fmt.Sprintf("autoscale.policies[%d]", i), bad)
		if !perr {
			ok = false
		}
		cfg.Policies = append(cfg.Policies, pol)
	}
	for _, sc := range s.Schedules {
		cfg.Schedules = append(cfg.Schedules, autoscale.Schedule{
			Name: sc.Name, Cron: sc.Cron, TimeZone: sc.TimeZone, Min: sc.Min, Max: sc.Max, Desired: sc.Desired,
		})
	}
	return cfg, ok
}

// convertPolicy converts one policy, reporting problems through bad. It
// returns false when any was found.
func convertPolicy(p AppScalePolicy, prefix string, bad func(string, string, ...any)) (autoscale.Policy, bool) {
	ok := true
	fail := func(path, format string, args ...any) {
		ok = false
		bad(path, format, args...)
	}
	pol := autoscale.Policy{Name: p.Name}
	if p.Kind != "" {
		k, err := autoscale.ParseKind(p.Kind)
		if err != nil {
			fail(prefix+".kind", "%v", err)
		}
		pol.Kind = k
	}
	if p.Metric == "" {
		fail(prefix+".metric", "a policy needs a metric (rps_per_instance, latency_p95, latency_p99, inflight_per_instance or cpu)")
		return pol, false
	}
	m, err := autoscale.ParseMetric(p.Metric)
	if err != nil {
		fail(prefix+".metric", "%v", err)
		// The metric decides how to read the target: leave a placeholder
		// so that only the metric is reported.
		if p.Target != "" {
			pol.Target = 1
		}
		return pol, false
	}
	pol.Metric = m
	if p.Target != "" {
		v, err := parseMetricValue(m, p.Target)
		if err != nil {
			fail(prefix+".target", "%v", err)
		}
		pol.Target = v
	}
	for j, st := range p.Steps {
		sp := fmt.Sprintf("%s.steps[%d]", prefix, j)
		step := autoscale.Step{Lower: math.Inf(-1), Upper: math.Inf(1)}
		if st.Lower != "" {
			if step.Lower, err = parseBound(m, st.Lower); err != nil {
				fail(sp+".lower", "%v", err)
			}
		}
		if st.Upper != "" {
			if step.Upper, err = parseBound(m, st.Upper); err != nil {
				fail(sp+".upper", "%v", err)
			}
		}
		if step.Adjust, step.Percent, err = parseAdjust(st.Adjust); err != nil {
			fail(sp+".adjust", "%v", err)
		}
		pol.Steps = append(pol.Steps, step)
	}
	return pol, ok
}

// parseMetricValue reads a target or bound of metric m: a duration for
// latency (in seconds), a number or percentage of a core for cpu, and a
// plain number otherwise.
func parseMetricValue(m autoscale.Metric, s string) (float64, error) {
	s = strings.TrimSpace(s)
	switch m {
	case autoscale.LatencyP95, autoscale.LatencyP99:
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return 0, fmt.Errorf("a latency is a duration such as 300ms, got %q", s)
		}
		return d.D().Seconds(), nil
	case autoscale.CPU:
		return parseFraction(s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("expected a number, got %q", s)
	}
	return v, nil
}

// parseBound is parseMetricValue that also takes "inf", "+inf" and
// "-inf".
func parseBound(m autoscale.Metric, s string) (float64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "inf", "+inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	}
	return parseMetricValue(m, s)
}

// parseFraction reads "0.6" or "60%" as 0.6.
func parseFraction(s string) (float64, error) {
	s = strings.TrimSpace(s)
	num, pct := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("expected a number or a percentage such as 0.6 or 60%%, got %q", s)
	}
	if pct {
		v /= 100
	}
	return v, nil
}

// parseAdjust reads a step's adjustment: "+2", "-1", "3", "+50%".
func parseAdjust(s string) (n int, percent bool, err error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, false, fmt.Errorf("a step needs an adjust, such as +2, -1 or +50%%")
	}
	num, percent := strings.CutSuffix(t, "%")
	n, err = strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		return 0, false, fmt.Errorf("expected a whole change such as +2, -1 or +50%%, got %q", s)
	}
	return n, percent, nil
}
