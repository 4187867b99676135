package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestStateText(t *testing.T) {
	for s := Pending; s <= Failed; s++ {
		b, _ := s.MarshalText()
		var got State
		if err := got.UnmarshalText(b); err != nil || got != s {
			t.Errorf("round trip %v: %v %v", s, got, err)
		}
		if strings.Contains(s.String(), "(") {
			t.Errorf("state %d has no name", s)
		}
	}
	if _, err := ParseState("bogus"); err == nil {
		t.Error("ParseState accepted bogus")
	}
}

// TestStateJSON holds the wire form: a state is its name as a JSON string,
// and neither an unknown name nor a value outside the enum passes.
func TestStateJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		S State `json:"s"`
	}{InService})
	if err != nil || string(b) != `{"s":"in_service"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var v struct {
		S State `json:"s"`
	}
	if err := json.Unmarshal([]byte(`{"s":"draining"}`), &v); err != nil || v.S != Draining {
		t.Fatalf("unmarshal = %v, %v", v.S, err)
	}
	if err := json.Unmarshal([]byte(`{"s":"gone"}`), &v); err == nil {
		t.Error("unmarshal accepted an unknown state")
	}
	if _, err := json.Marshal(State(200)); err == nil {
		t.Error("marshal accepted a value outside the enum")
	}
}

func TestStateClasses(t *testing.T) {
	for s := Pending; s <= Failed; s++ {
		if s.Terminal() != (s == Stopped || s == Failed) {
			t.Errorf("%v.Terminal() = %v", s, s.Terminal())
		}
		if s.Live() == s.Terminal() {
			t.Errorf("%v is both or neither live and terminal", s)
		}
	}
}

// FuzzParseState checks that ParseState accepts exactly the printed names.
func FuzzParseState(f *testing.F) {
	for _, n := range stateNames {
		f.Add(n)
	}
	f.Add("")
	f.Add("IN_SERVICE")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseState(s)
		if err == nil && st.String() != s {
			t.Fatalf("ParseState(%q) = %v", s, st)
		}
	})
}
