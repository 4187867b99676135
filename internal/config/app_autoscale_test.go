package config

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/autoscale"
)

const autoscaleApp = `app: web
run:
  command: ./web
group:
  min: 1
  max: 8
autoscale:
  interval: 2s
  window: 20s
  tolerance: 5%
  max_step_up: 3
  max_factor_up: 1.5
  max_step_down: 2
  stabilization: 2m
  cooldown_out: 5s
  cooldown_in: 20s
  warmup: 3s
  policies:
    - {name: rps, metric: rps_per_instance, target: 50}
    - {metric: latency_p95, target: 300ms}
    - {metric: cpu, target: 60%}
    - name: inflight-steps
      kind: step
      metric: inflight_per_instance
      steps:
        - {lower: 10, adjust: +50%}
        - {lower: 5, upper: 10, adjust: "+1"}
        - {upper: 1, adjust: -1}
  schedules:
    - {name: office, cron: "0 8 * * 1-5", time_zone: Europe/Paris, min: 2}
    - {cron: "@daily", desired: 1}
`

func parseApp(t *testing.T, yml string) (*App, error) {
	t.Helper()
	dir := writeFiles(t, map[string]string{"shoal.yaml": yml})
	return Parse("shoal.yaml", []byte(yml), dir)
}

func TestAutoscaleConfig(t *testing.T) {
	a, err := parseApp(t, autoscaleApp)
	if err != nil {
		t.Fatal(err)
	}
	if !a.AutoscaleEnabled() {
		t.Fatal("autoscale not enabled")
	}
	c := a.AutoscaleConfig()
	if c.Min != 1 || c.Max != 8 || c.Interval != 2*time.Second || c.Window != 20*time.Second ||
		c.Tolerance != 0.05 || c.MaxStepUp != 3 || c.MaxFactorUp != 1.5 || c.MaxStepDown != 2 ||
		c.Stabilization != 2*time.Minute || c.CooldownOut != 5*time.Second || c.CooldownIn != 20*time.Second ||
		c.Warmup != 3*time.Second {
		t.Errorf("config = %+v", c)
	}
	if len(c.Policies) != 4 {
		t.Fatalf("policies = %+v", c.Policies)
	}
	if p := c.Policies[0]; p.Name != "rps" || p.Metric != autoscale.RPSPerInstance || p.Target != 50 {
		t.Errorf("policy 0 = %+v", p)
	}
	if p := c.Policies[1]; p.Metric != autoscale.LatencyP95 || math.Abs(p.Target-0.3) > 1e-12 {
		t.Errorf("latency policy = %+v, want target 0.3s", p)
	}
	if p := c.Policies[2]; p.Metric != autoscale.CPU || math.Abs(p.Target-0.6) > 1e-12 {
		t.Errorf("cpu policy = %+v, want 0.6 cores", p)
	}
	p := c.Policies[3]
	want := []autoscale.Step{
		{Lower: 10, Upper: math.Inf(1), Adjust: 50, Percent: true},
		{Lower: 5, Upper: 10, Adjust: 1},
		{Lower: math.Inf(-1), Upper: 1, Adjust: -1},
	}
	if p.Kind != autoscale.StepScaling || len(p.Steps) != len(want) {
		t.Fatalf("step policy = %+v", p)
	}
	for i := range want {
		if p.Steps[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, p.Steps[i], want[i])
		}
	}
	if len(c.Schedules) != 2 || c.Schedules[0].TimeZone != "Europe/Paris" || *c.Schedules[0].Min != 2 ||
		c.Schedules[1].Desired == nil || *c.Schedules[1].Desired != 1 {
		t.Errorf("schedules = %+v", c.Schedules)
	}
	if _, err := autoscale.NewScaler(c); err != nil {
		t.Errorf("NewScaler: %v", err)
	}
}

func TestAutoscaleDefaults(t *testing.T) {
	a, err := parseApp(t, "app: web\nrun: {command: ./web}\ngroup: {min: 2, max: 5}\nautoscale:\n  policies: [{metric: rps_per_instance, target: 10}]\n")
	if err != nil {
		t.Fatal(err)
	}
	got := a.AutoscaleConfig()
	want := autoscale.DefaultConfig()
	want.Min, want.Max = 2, 5
	got.Policies = nil
	if got.Interval != want.Interval || got.Window != want.Window || got.Tolerance != want.Tolerance ||
		got.Stabilization != want.Stabilization || got.Warmup != want.Warmup || got.Min != 2 || got.Max != 5 ||
		got.MaxStepUp != want.MaxStepUp || got.MaxFactorUp != want.MaxFactorUp || got.CooldownIn != want.CooldownIn {
		t.Errorf("config = %+v, want %+v", got, want)
	}

	a, err = parseApp(t, "app: web\nrun: {command: ./web}\n")
	if err != nil {
		t.Fatal(err)
	}
	if a.AutoscaleEnabled() || len(a.AutoscaleConfig().Policies) != 0 {
		t.Errorf("no autoscale section: enabled %v, %+v", a.AutoscaleEnabled(), a.AutoscaleConfig())
	}
}

func TestAutoscaleProblems(t *testing.T) {
	yml := `app: web
run:
  command: ./web
group: {min: 1, max: 4}
autoscale:
  window: 500ms
  tolerance: lots
  stabilization: -1s
  policies:
    - {metric: latency_p95, target: 300}
    - {metric: bogus, target: 1}
    - {name: x, metric: rps_per_instance}
    - {name: x, metric: cpu, target: 0.5}
    - kind: step
      metric: cpu
      steps:
        - {lower: 0.8, adjust: two}
        - {lower: 0.9, adjust: +1}
  schedules:
    - {cron: "0 8 * * 1-5", time_zone: Mars/Base, min: 2}
    - {cron: "every day", max: 3}
    - {cron: "@daily"}
`
	_, err := parseApp(t, yml)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	want := []string{
		"shoal.yaml:6:11: autoscale.window: window 500ms must span at least two intervals",
		"shoal.yaml:7:14: autoscale.tolerance: expected a number or a percentage",
		"shoal.yaml:8:18: autoscale.stabilization: stabilization must not be negative",
		"shoal.yaml:10:37: autoscale.policies[0].target: a latency is a duration such as 300ms",
		"shoal.yaml:11:16: autoscale.policies[1].metric: unknown metric \"bogus\"",
		"shoal.yaml:12:7: autoscale.policies[2].target: target must be a number > 0",
		"shoal.yaml:13:14: autoscale.policies[3].name: name \"x\" is already used by policies[2]",
		"shoal.yaml:17:32: autoscale.policies[4].steps[0].adjust: expected a whole change",
		"shoal.yaml:18:11: autoscale.policies[4].steps[1]: overlaps steps[0]",
		"shoal.yaml:20:40: autoscale.schedules[0].time_zone: unknown time zone \"Mars/Base\"",
		"shoal.yaml:21:14: autoscale.schedules[1].cron: cron expression \"every day\"",
		"shoal.yaml:22:7: autoscale.schedules[2]: a schedule must set at least one of min, max or desired",
	}
	text := err.Error()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in:\n%s", w, text)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ps), len(want), text)
	}
}

func FuzzAutoscaleValues(f *testing.F) {
	for _, s := range []string{"300ms", "60%", "0.6", "+50%", "-1", "inf", "-inf", "", "1e309", "NaN", "%", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range []autoscale.Metric{autoscale.RPSPerInstance, autoscale.LatencyP95, autoscale.CPU} {
			if v, err := parseBound(m, s); err == nil && math.IsNaN(v) {
				t.Errorf("parseBound(%s, %q) = NaN without error", m, s)
			}
		}
		if v, err := parseFraction(s); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Errorf("parseFraction(%q) = %g without error", s, v)
		}
		_, _, _ = parseAdjust(s)
	})
}
