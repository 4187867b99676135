package api

import (
	"encoding/json"
	"testing"
)

func TestRolloutPhaseText(t *testing.T) {
	for p := PhaseSurging; p <= PhaseAborted; p++ {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var got RolloutPhase
		if err := json.Unmarshal(b, &got); err != nil || got != p || string(b) != `"`+p.String()+`"` {
			t.Errorf("round trip %v: %s -> %v, %v", p, b, got, err)
		}
	}
	if _, err := json.Marshal(RolloutPhase(99)); err == nil {
		t.Error("marshal accepted a value outside the enum")
	}
	var p RolloutPhase
	if err := json.Unmarshal([]byte(`"gone"`), &p); err == nil {
		t.Error("unmarshal accepted an unknown phase")
	}
}

// FuzzParseRolloutPhase checks that ParseRolloutPhase accepts exactly the
// printed names.
func FuzzParseRolloutPhase(f *testing.F) {
	for _, n := range phaseNames {
		f.Add(n)
	}
	f.Add("")
	f.Add("DONE")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseRolloutPhase(s)
		if err == nil && p.String() != s {
			t.Fatalf("ParseRolloutPhase(%q) = %v", s, p)
		}
	})
}
