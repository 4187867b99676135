package reconcile

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

func moving(id string, ageSec int) Instance {
	in := inst(id, api.InService, ageSec)
	in.Move = "off host h1 (draining)"
	return in
}

func TestDecideMove(t *testing.T) {
	replacement := func(id string, st api.State, of string) Instance {
		in := inst(id, st, 0)
		in.Replaces = of
		return in
	}
	tests := []struct {
		name    string
		desired Desired
		obs     []Instance
		want    []Action
	}{
		{
			name:    "a moving instance is replaced first, within the bound",
			desired: Desired{Release: 1, Count: 4, MaxLaunching: 1},
			obs:     []Instance{moving("a", 9), moving("b", 8), inst("c", api.InService, 7), inst("d", api.InService, 6)},
			want:    []Action{{Kind: Launch, Release: 1, Replaces: "a", Reason: "move a off host h1 (draining)"}},
		},
		{
			name:    "it keeps serving while its replacement starts",
			desired: Desired{Release: 1, Count: 2, MaxLaunching: 1},
			obs:     []Instance{moving("a", 9), inst("c", api.InService, 7), replacement("r", api.Pending, "a")},
		},
		{
			name:    "it is retired once its own replacement serves",
			desired: Desired{Release: 1, Count: 3, MaxLaunching: 1},
			obs: []Instance{moving("a", 9), moving("b", 8), inst("c", api.InService, 7),
				replacement("r", api.InService, "a")},
			want: []Action{
				{Kind: Launch, Release: 1, Replaces: "b", Reason: "move b off host h1 (draining)"},
				{Kind: Retire, Instance: "a", Reason: "moved off host h1 (draining): replacement r in service"},
			},
		},
		{
			name:    "unhealthy instances are replaced before moving ones",
			desired: Desired{Release: 1, Count: 3, MaxLaunching: 1},
			obs:     []Instance{moving("a", 9), inst("u", api.Unhealthy, 8), inst("c", api.InService, 7)},
			want:    []Action{{Kind: Launch, Release: 1, Replaces: "u", Reason: "replace unhealthy instance u"}},
		},
		{
			name:    "a scale-in below the others retires it without a replacement",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{moving("a", 9), inst("c", api.InService, 7)},
			want: []Action{{Kind: Retire, Instance: "a",
				Reason: "moved off host h1 (draining): 1 other instances in service"}},
		},
		{
			name:    "move is ignored while the instance starts",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{{ID: "a", Release: 1, State: api.Starting, Started: t0, Move: "off host h1 (draining)"}},
		},
		{
			name:    "an unhealthy moving instance is replaced as unhealthy",
			desired: Desired{Release: 1, Count: 1, MaxLaunching: 1},
			obs:     []Instance{{ID: "a", Release: 1, State: api.Unhealthy, Started: t0, Move: "off host h1 (draining)"}},
			want:    []Action{{Kind: Launch, Release: 1, Replaces: "a", Reason: "replace unhealthy instance a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(t0, tt.desired, tt.obs, Backoff{})
			if !reflect.DeepEqual(p.Actions, tt.want) {
				t.Errorf("actions:\n got %+v\nwant %+v", p.Actions, tt.want)
			}
		})
	}
}

// TestMoveKeepsServing carries out Decide's plans on a simulated group
// (a launch serves one round later; a retire ends the instance at once)
// while half of it moves: every round keeps at least Count in service and
// at most Count+MaxLaunching running, and the move ends with none left.
func TestMoveKeepsServing(t *testing.T) {
	for _, maxLaunching := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("max_launching=%d", maxLaunching), func(t *testing.T) {
			d := Desired{Release: 1, Count: 4, MaxLaunching: maxLaunching}
			obs := []Instance{moving("a", 9), moving("b", 8), inst("c", api.InService, 7), inst("d", api.InService, 6)}
			seq := 0
			for round := range 20 {
				inService := 0
				for i := range obs {
					if obs[i].State == api.Pending {
						obs[i].State = api.InService // started last round
					}
				}
				for _, in := range obs {
					if in.State == api.InService {
						inService++
					}
				}
				if inService < d.Count || len(obs) > d.Count+maxLaunching {
					t.Fatalf("round %d: %d in service of %d running: %+v", round, inService, len(obs), obs)
				}
				p := Decide(t0, d, obs, Backoff{})
				if len(p.Actions) == 0 {
					for _, in := range obs {
						if in.Move != "" {
							t.Fatalf("round %d: nothing to do, but %s still moves", round, in.ID)
						}
					}
					return
				}
				for _, a := range p.Actions {
					switch a.Kind {
					case Launch:
						seq++
						obs = append(obs, Instance{ID: fmt.Sprintf("r%d", seq), Release: 1, State: api.Pending,
							Started: t0, Replaces: a.Replaces})
					case Retire, Stop:
						obs = slices.DeleteFunc(obs, func(in Instance) bool { return in.ID == a.Instance })
					}
				}
			}
			t.Fatalf("the move did not end in 20 rounds: %+v", obs)
		})
	}
}
