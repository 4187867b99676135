package controller

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestSetEnvPutBackWhenItsReleaseDoesNotRun: an env change whose release
// is never made (an invalid shoal.yaml) or is rolled back (its instances
// crash) leaves the stored overrides as they were, so that `shoal env
// list` shows what runs.
func TestSetEnvPutBackWhenItsReleaseDoesNotRun(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 90*time.Second)

	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "old"}}, nil, DeployRequest{}); err != nil || v != 2 {
		t.Fatalf("env set FEATURE=old: v%d, %v", v, err)
	}
	h.waitFor("v2 serving", onRelease(2, 1))
	want := "[FEATURE=old]"
	overrides := func() string {
		vs, err := h.st.EnvOverrides("web")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vs {
			out = append(out, v.Name+"="+v.Value)
		}
		return fmt.Sprint(out)
	}

	// No release: shoal.yaml no longer loads.
	p := filepath.Join(dir, "shoal.yaml")
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(good, "no_such_key: 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "new"}, {Name: "EXTRA", Value: "x"}}, nil, DeployRequest{})
	if !errors.Is(err, ErrInvalidConfig) || v != 0 {
		t.Fatalf("env set with a broken shoal.yaml: v%d, %v; want ErrInvalidConfig and no release", v, err)
	}
	if got := overrides(); got != want {
		t.Errorf("overrides after a change that made no release: %s, want %s", got, want)
	}

	// A release that is rolled back: its instances crash.
	if err := os.WriteFile(p, good, 0o644); err != nil {
		t.Fatal(err)
	}
	setMode(t, dir, "serve", "crash", "")
	v, err = h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "new"}}, []string{"NOT_SET"}, DeployRequest{})
	if err == nil || v != 3 {
		t.Fatalf("env set with crashing instances: v%d, %v; want v3 and an error", v, err)
	}
	if cur := h.c.Release().Version; cur != 2 {
		t.Fatalf("the group runs v%d after a failed env change, want v2", cur)
	}
	if got := overrides(); got != want {
		t.Errorf("overrides after a rolled-back change: %s, want %s", got, want)
	}
}
