package rollout

import (
	"strings"
	"testing"
	"time"
)

func TestParseQuantity(t *testing.T) {
	cases := []struct {
		in      string
		want    Quantity
		wantErr bool
	}{
		{in: "", want: Quantity{}},
		{in: "0", want: Count(0)},
		{in: " 3 ", want: Count(3)},
		{in: "25%", want: Percent(25)},
		{in: "100%", want: Percent(100)},
		{in: "0%", want: Percent(0)},
		{in: "101%", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1.5", wantErr: true},
		{in: "%", wantErr: true},
		{in: "25 %", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "100001", wantErr: true},
		{in: "99999999999999999999999", wantErr: true},
		{in: "٣", wantErr: true},
	}
	for _, tc := range cases {
		got, err := ParseQuantity(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseQuantity(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPolicyResolve(t *testing.T) {
	cases := []struct {
		policy             Policy
		desired            int
		surge, unavailable int
	}{
		{Policy{}, 0, 1, 0},
		{Policy{}, 1, 1, 0},
		{Policy{}, 4, 1, 0},
		{Policy{}, 5, 2, 0},
		{Policy{}, 10, 3, 0},
		{Policy{MaxSurge: Count(2), MaxUnavailable: Count(1)}, 4, 2, 1},
		{Policy{MaxSurge: Percent(50), MaxUnavailable: Percent(50)}, 3, 2, 1},
		{Policy{MaxSurge: Count(0), MaxUnavailable: Percent(10)}, 4, 0, 1}, // rounds to 0, raised to 1
		{Policy{MaxSurge: Percent(0), MaxUnavailable: Count(2)}, 4, 0, 2},
		{Policy{MaxUnavailable: Percent(100)}, 4, 1, 4},
	}
	for _, tc := range cases {
		if err := tc.policy.Validate(); err != nil {
			t.Errorf("%+v: %v", tc.policy, err)
		}
		s, u := tc.policy.Resolve(tc.desired)
		if s != tc.surge || u != tc.unavailable {
			t.Errorf("%+v.Resolve(%d) = %d, %d; want %d, %d", tc.policy, tc.desired, s, u, tc.surge, tc.unavailable)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		policy Policy
		want   []string // substrings of the error; none means valid
	}{
		{Policy{}, nil},
		{Policy{MaxSurge: Count(0), MaxUnavailable: Count(0)}, []string{"both zero"}},
		{Policy{MaxSurge: Count(0), MaxUnavailable: Percent(0)}, []string{"both zero"}},
		{Policy{MaxSurge: Count(0)}, []string{"both zero"}},
		{Policy{HealthGrace: time.Minute, BatchTimeout: time.Minute}, []string{"longer than the health grace"}},
		{Policy{HealthGrace: time.Minute, BatchTimeout: 61 * time.Second}, nil},
		{Policy{BatchTimeout: -1, DrainTimeout: -1, MaxFailures: -1, HealthGrace: -1},
			[]string{"batch_timeout", "drain_timeout", "max_failures", "health_grace"}},
		{Policy{MaxSurge: Quantity{n: -1, set: true}, MaxUnavailable: Quantity{n: 200, percent: true, set: true}},
			[]string{"max_surge", "max_unavailable"}},
	}
	for _, tc := range cases {
		err := tc.policy.Validate()
		if (err != nil) != (len(tc.want) > 0) {
			t.Errorf("%+v: error %v, want %v", tc.policy, err, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not mention %q", tc.policy, err, w)
			}
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.BatchTimeout != DefaultBatchTimeout || p.DrainTimeout != DefaultDrainTimeout || p.MaxFailures != DefaultMaxFailures {
		t.Errorf("defaults %+v", p)
	}
	// A slow-booting app's grace stretches the batch timeout.
	if p := (Policy{HealthGrace: 4 * time.Minute}).WithDefaults(); p.BatchTimeout != 8*time.Minute {
		t.Errorf("batch timeout with a 4m grace = %s, want 8m", p.BatchTimeout)
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"", "0", "1", "25%", "100%", "101%", "-1", " 7 ", "%", "1e3", "00012%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuantity(s)
		if err != nil {
			return
		}
		if err := q.validate(); err != nil {
			t.Fatalf("ParseQuantity(%q) = %v, which does not validate: %v", s, q, err)
		}
		back, err := ParseQuantity(q.String())
		if err != nil || back != q {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, q, q.String(), back, err)
		}
		for _, d := range []int{0, 1, 7, maxQuantity} {
			if up, down := q.of(d, true), q.of(d, false); up < down || down < 0 || (q.percent && up > d) {
				t.Fatalf("%v of %d: up %d down %d", q, d, up, down)
			}
		}
	})
}
