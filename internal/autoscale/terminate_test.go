package autoscale

import (
	"slices"
	"testing"
	"time"
)

func TestChooseScaleIn(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	insts := []Instance{
		{ID: "cur-old", Release: 7, Started: at(0)},
		{ID: "cur-new", Release: 7, Started: at(30)},
		{ID: "r5", Release: 5, Started: at(40)},
		{ID: "r6-b", Release: 6, Started: at(20)},
		{ID: "r6-a", Release: 6, Started: at(20)}, // same start: by ID
		{ID: "r8-rolled-back", Release: 8, Started: at(50)},
		{ID: "r4-protected", Release: 4, Started: at(1), Protected: true},
	}
	orig := slices.Clone(insts)
	for _, c := range []struct {
		n    int
		want []string
	}{
		{0, nil},
		{1, []string{"r5"}},
		{4, []string{"r5", "r6-a", "r6-b", "r8-rolled-back"}},
		{6, []string{"r5", "r6-a", "r6-b", "r8-rolled-back", "cur-old", "cur-new"}},
		{10, []string{"r5", "r6-a", "r6-b", "r8-rolled-back", "cur-old", "cur-new"}}, // never the protected one
	} {
		if got := ChooseScaleIn(insts, c.n, 7); !slices.Equal(got, c.want) {
			t.Errorf("ChooseScaleIn(n=%d) = %v, want %v", c.n, got, c.want)
		}
	}
	if !slices.Equal(insts, orig) {
		t.Fatal("ChooseScaleIn modified its input")
	}
}
