package autoscale

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewScaler(Config{}); err == nil {
		t.Fatal("NewScaler(zero Config) succeeded")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := oneSecondConfig()
	c.Min, c.Max = 5, 3
	c.Window, c.Tolerance, c.MaxFactorUp, c.CooldownIn = 1500e6, 1, 0.5, -1
	c.Policies = []Policy{
		{Metric: RPSPerInstance, Target: 0},
		{Metric: RPSPerInstance, Target: 10},
		{Name: "steps", Kind: StepScaling, Metric: CPU, Target: 3, Steps: []Step{
			{Lower: 0, Upper: 1, Adjust: 1},
			{Lower: 0.5, Upper: 2, Adjust: 0},
			{Lower: 3, Upper: 2, Adjust: -200, Percent: true},
			{Lower: math.NaN(), Upper: math.Inf(1), Adjust: 1},
		}},
		{Name: "x", Metric: Metric(42), Target: 1, Steps: []Step{{Lower: 0, Upper: 1, Adjust: 1}}},
		{Name: "y", Kind: Kind(9), Metric: CPU},
	}
	c.Schedules = []Schedule{{Cron: "0 8 * * *"}}
	var ps Problems
	if !errors.As(c.Validate(), &ps) {
		t.Fatalf("Validate = %v, want Problems", c.Validate())
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Path)
	}
	want := []string{
		"max", "window", "tolerance", "max_factor_up", "cooldown_in",
		"policies[0].target",
		"policies[1].name",
		"policies[2].target",
		"policies[2].steps[1].adjust", "policies[2].steps[1]",
		"policies[2].steps[2]", "policies[2].steps[2].adjust",
		"policies[2].steps[3].lower",
		"policies[3].metric", "policies[3].steps",
		"policies[4].kind",
		"schedules[0]",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("paths:\n got %v\nwant %v\n%v", got, want, ps)
	}
	if !strings.Contains(ps.Error(), `policies[1].name: name "rps_per_instance" is already used by policies[0]`) {
		t.Fatalf("Error() = %s", ps.Error())
	}
}

func TestMetricAndKindNames(t *testing.T) {
	for m := range metricNames {
		b, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Metric
		if err := back.UnmarshalText(b); err != nil || back != m {
			t.Fatalf("round trip %s: %v %v", m, back, err)
		}
	}
	if _, err := ParseMetric("p95"); err == nil {
		t.Fatal("ParseMetric(p95) succeeded")
	}
	if _, err := Metric(0).MarshalText(); err == nil {
		t.Fatal("marshal of the zero Metric succeeded")
	}
	for _, k := range []Kind{TargetTracking, StepScaling} {
		if back, err := ParseKind(k.String()); err != nil || back != k {
			t.Fatalf("ParseKind(%s) = %v, %v", k, back, err)
		}
	}
	for _, s := range []State{Steady, CoolingOut, Stabilizing, CoolingIn, Paused} {
		if strings.HasPrefix(s.String(), "state(") {
			t.Fatalf("state %d has no name", s)
		}
	}
}
