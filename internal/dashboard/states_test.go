package dashboard

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestStateNamesAreTheInstanceStates holds the dashboard's state strings to
// the one instance state enum: every api.State has its constant and a look
// of its own, and no constant names a state the enum lacks.
func TestStateNamesAreTheInstanceStates(t *testing.T) {
	consts := []string{StatePending, StateStarting, StateInService, StateUnhealthy, StateDraining, StateStopped, StateFailed}
	for s := api.Pending; s <= api.Failed; s++ {
		if int(s) >= len(consts) || consts[s] != s.String() {
			t.Errorf("no dashboard constant for state %s", s)
		}
		if _, ok := stateLook[s.String()]; !ok {
			t.Errorf("state %s has no look", s)
		}
	}
	for _, c := range consts {
		if _, err := api.ParseState(c); err != nil {
			t.Errorf("dashboard state %q: %v", c, err)
		}
	}
}
