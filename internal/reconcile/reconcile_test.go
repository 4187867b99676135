package reconcile

import (
	"reflect"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func inst(id string, st api.State, ageSec int) Instance {
	return Instance{ID: id, Release: 1, State: st, Started: t0.Add(-time.Duration(ageSec) * time.Second)}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		desired Desired
		obs     []Instance
		backoff Backoff
		want    []Action
		blocked bool
	}{
		{
			name:    "cold start launches up to the bound",
			desired: Desired{Release: 1, Count: 3, MaxLaunching: 2},
			want: []Action{
				{Kind: Launch, Release: 1, Reason: "0 of 3 instances live"},
				{Kind: Launch, Release: 1, Reason: "1 of 3 instances live"},
			},
		},
		{
			name:    "launching counts against the bound",
			desired: Desired{Release: 1, Count: 3, MaxLaunching: 2},
			obs:     []Instance{inst("a", api.Starting, 1), inst("b", api.InService, 5)},
			want:    []Action{{Kind: Launch, Release: 1, Reason: "2 of 3 instances live"}},
		},
		{
			name:    "steady state does nothing",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.InService, 5), inst("c", api.Failed, 3), inst("d", api.Stopped, 3)},
		},
		{
			name:    "failed instance is replaced",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.Failed, 5)},
			want:    []Action{{Kind: Launch, Release: 1, Reason: "1 of 2 instances live"}},
		},
		{
			name:    "unhealthy instance: launch first, keep it",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.Unhealthy, 5)},
			want:    []Action{{Kind: Launch, Release: 1, Replaces: "b", Reason: "replace unhealthy instance b"}},
		},
		{
			name:    "unhealthy instance waits while its replacement starts",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs: []Instance{inst("a", api.InService, 9), inst("b", api.Unhealthy, 5),
				{ID: "c", Release: 1, State: api.Starting, Started: t0, Replaces: "b"}},
		},
		{
			name:    "unhealthy instance retired once the replacement serves",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs: []Instance{inst("a", api.InService, 9), inst("b", api.Unhealthy, 5),
				{ID: "c", Release: 1, State: api.InService, Started: t0, Replaces: "b"}},
			want: []Action{{Kind: Retire, Instance: "b", Reason: "unhealthy; 2 healthy instances in service"}},
		},
		{
			name:    "scale down stops starting before serving, then the oldest",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.InService, 5), inst("c", api.Starting, 1)},
			want: []Action{
				{Kind: Stop, Instance: "c", Reason: "scale down to 1"},
				{Kind: Retire, Instance: "a", Reason: "scale down to 1"},
			},
		},
		{
			name:    "scale down retires an older release first, never a protected instance",
			desired: Desired{Release: 2, Count: 2, MaxLaunching: 1},
			obs: []Instance{
				{ID: "old-protected", Release: 1, State: api.InService, Started: t0.Add(-time.Hour), Protected: true},
				{ID: "new-oldest", Release: 2, State: api.InService, Started: t0.Add(-30 * time.Minute)},
				{ID: "old", Release: 1, State: api.InService, Started: t0.Add(-time.Minute)},
				{ID: "new", Release: 2, State: api.InService, Started: t0.Add(-time.Second)},
			},
			want: []Action{
				{Kind: Retire, Instance: "old", Reason: "scale down to 2"},
				{Kind: Retire, Instance: "new-oldest", Reason: "scale down to 2"},
			},
		},
		{
			name:    "growth launches at once beyond the bound",
			desired: Desired{Release: 1, Count: 5, MaxLaunching: 1, Grow: 4},
			obs:     []Instance{inst("a", api.InService, 9)},
			want: []Action{
				{Kind: Launch, Release: 1, Reason: "1 of 5 instances live"},
				{Kind: Launch, Release: 1, Reason: "2 of 5 instances live"},
				{Kind: Launch, Release: 1, Reason: "3 of 5 instances live"},
				{Kind: Launch, Release: 1, Reason: "4 of 5 instances live"},
			},
		},
		{
			name:    "replacements stay bounded while growth launches",
			desired: Desired{Release: 1, Count: 5, MaxLaunching: 1, Grow: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.Starting, 1)},
			want: []Action{
				{Kind: Launch, Release: 1, Reason: "2 of 5 instances live"},
			},
		},
		{
			name:    "backoff holds growth too",
			desired: Desired{Release: 1, Count: 3, MaxLaunching: 1, Grow: 3},
			backoff: Backoff{Failures: 4, LastFailure: t0.Add(-time.Second)},
			blocked: true,
		},
		{
			name:    "scale to zero retires unhealthy too",
			desired: Desired{Release: 1, Count: 0, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.InService, 9), inst("b", api.Unhealthy, 5)},
			want: []Action{
				{Kind: Retire, Instance: "a", Reason: "scale down to 0"},
				{Kind: Retire, Instance: "b", Reason: "unhealthy; 0 healthy instances in service"},
			},
		},
		{
			name:    "draining instances do not count",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.Draining, 9)},
			want:    []Action{{Kind: Launch, Release: 1, Reason: "0 of 1 instances live"}},
		},
		{
			name:    "backoff holds launches",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{inst("a", api.Failed, 1)},
			backoff: Backoff{Failures: 4, LastFailure: t0.Add(-time.Second)},
			blocked: true,
		},
		{
			name:    "backoff over launches again",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			backoff: Backoff{Failures: 4, LastFailure: t0.Add(-9 * time.Second)},
			want:    []Action{{Kind: Launch, Release: 1, Reason: "0 of 1 instances live"}},
		},
		{
			name:    "zero bound means one",
			desired: Desired{Release: 2, Count: 2},
			want:    []Action{{Kind: Launch, Release: 2, Reason: "0 of 2 instances live"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(t0, tt.desired, tt.obs, tt.backoff)
			if !reflect.DeepEqual(p.Actions, tt.want) {
				t.Errorf("actions:\n got %+v\nwant %+v", p.Actions, tt.want)
			}
			if (p.Blocked != "") != tt.blocked {
				t.Errorf("blocked = %q, want blocked %v", p.Blocked, tt.blocked)
			}
			if tt.blocked && p.RetryAt.IsZero() {
				t.Error("blocked plan without RetryAt")
			}
		})
	}
}

func TestBlockedReason(t *testing.T) {
	b := Backoff{Failures: 4, LastFailure: t0}
	p := Decide(t0, Desired{Release: 3, Count: 1}, nil, b)
	const want = "release v3 crashed 4 times in a row; next launch in 8s"
	if p.Blocked != want {
		t.Fatalf("Blocked = %q, want %q", p.Blocked, want)
	}
	if !p.RetryAt.Equal(t0.Add(8 * time.Second)) {
		t.Fatalf("RetryAt = %v", p.RetryAt)
	}
}

func TestBackoffDelay(t *testing.T) {
	want := map[int]time.Duration{0: 0, 1: 0, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second,
		5: 16 * time.Second, 6: 32 * time.Second, 7: MaxDelay, 50: MaxDelay}
	for n, d := range want {
		if got := (Backoff{Failures: n}).Delay(); got != d {
			t.Errorf("Delay(%d) = %v, want %v", n, got, d)
		}
	}
}

func TestBackoffEnded(t *testing.T) {
	var b Backoff
	b = b.Ended(t0, t0.Add(-time.Second), false)
	b = b.Ended(t0.Add(time.Second), t0, true) // in service, but not for long
	if b.Failures != 2 || !b.LastFailure.Equal(t0.Add(time.Second)) {
		t.Fatalf("after two quick ends: %+v", b)
	}
	if got := b.NextLaunch(); !got.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("NextLaunch = %v", got)
	}
	b = b.Ended(t0.Add(time.Minute), t0, true) // stable for a minute
	if b != (Backoff{}) {
		t.Fatalf("stable end did not reset: %+v", b)
	}
	if !b.NextLaunch().IsZero() {
		t.Fatal("zero backoff has a NextLaunch")
	}
}
