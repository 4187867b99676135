package controller

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestDeployRejectsRestartOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 3)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 30*time.Second)

	p := filepath.Join(dir, "shoal.yaml")
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(pairs ...string) {
		t.Helper()
		s := string(orig)
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("shoal.yaml lacks %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// health and group bounds: rejected, every change listed, no release.
	edit("interval: 100ms", "interval: 200ms", "max: 3", "max: 4", "CONTROLLER_TEST_APP: serve", "CONTROLLER_TEST_APP: serve\n    NEW: x")
	_, err = h.deploy(ctx, DeployRequest{})
	if !errors.Is(err, ErrRestartRequired) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("deploy with a new health interval: %v, want ErrRestartRequired", err)
	}
	for _, want := range []string{"health.interval changed (100ms -> 200ms)", "group.max changed (3 -> 4)", "restart shoal up to apply"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if rels, _ := h.st.Releases("web"); len(rels) != 1 {
		t.Errorf("%d releases after a rejected deploy, want 1", len(rels))
	}
	if _, _, held := h.c.dep.lock.Holder("web"); held {
		t.Error("deploy lock held after a rejected deploy")
	}

	// group.desired: deployed, with a note that it changes nothing.
	edit("desired: 1", "desired: 2", "CONTROLLER_TEST_APP: serve", "CONTROLLER_TEST_APP: serve\n    NEW: x")
	var log strings.Builder
	v, err := h.deploy(ctx, DeployRequest{Log: &log})
	if err != nil || v != 2 {
		t.Fatalf("deploy with a new desired count: %d, %v", v, err)
	}
	if !strings.Contains(log.String(), "group.desired changed (1 -> 2)") || !strings.Contains(log.String(), "shoal scale 2") {
		t.Errorf("deploy log lacks the desired note:\n%s", log.String())
	}
	h.waitFor("v2 serving, count unchanged", onRelease(2, 1))
}
