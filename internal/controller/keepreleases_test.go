package controller

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestDeployChangesKeepReleases: keep_releases changed by a deploy is the
// one that deploy prunes with (issue 14), not the one the controller
// started with; lowered, the older releases go at once.
func TestDeployChangesKeepReleases(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2) // keep_releases: 2
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 2*time.Minute)

	versions := func() []int {
		t.Helper()
		infos, err := h.c.Releases()
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, ri := range infos {
			out = append(out, ri.Version)
		}
		slices.Sort(out)
		return out
	}
	// Each deploy changes the environment, so that it makes a release.
	editFile(t, dir, "shoal.yaml", "    CONTROLLER_TEST_APP: serve", "    CONTROLLER_TEST_APP: serve\n    DEPLOY: \"2\"")
	if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != 2 {
		t.Fatalf("deploy: v%d, %v; want v2", v, err)
	}
	if got := versions(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("releases after v2 with keep_releases 2: %v, want [1 2]", got)
	}
	editFile(t, dir, "shoal.yaml", "keep_releases: 2", "keep_releases: 1")
	editFile(t, dir, "shoal.yaml", `DEPLOY: "2"`, `DEPLOY: "3"`)
	if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != 3 {
		t.Fatalf("deploy: v%d, %v; want v3", v, err)
	}
	if got := versions(); !slices.Equal(got, []int{3}) {
		t.Errorf("releases after v3 deployed with keep_releases 1: %v, want [3]", got)
	}
	editFile(t, dir, "shoal.yaml", "keep_releases: 1", "keep_releases: 3")
	for want := 4; want <= 5; want++ {
		editFile(t, dir, "shoal.yaml", fmt.Sprintf(`DEPLOY: "%d"`, want-1), fmt.Sprintf(`DEPLOY: "%d"`, want))
		if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != want {
			t.Fatalf("deploy: v%d, %v; want v%d", v, err, want)
		}
	}
	if got := versions(); !slices.Equal(got, []int{3, 4, 5}) {
		t.Errorf("releases after v5 deployed with keep_releases 3: %v, want [3 4 5]", got)
	}
}
