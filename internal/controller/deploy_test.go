package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// onRelease waits until n instances of release v serve and nothing else runs.
func onRelease(v, n int) func(api.Status) error {
	return func(st api.Status) error {
		if err := inService(n)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.Release != v {
				return errors.New("instance " + in.ID + " runs another release")
			}
		}
		if st.Release != v {
			return errors.New("group not on the release yet")
		}
		return nil
	}
}

func setMode(t *testing.T, dir, from, to string, extra string) {
	t.Helper()
	p := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "CONTROLLER_TEST_APP: "+from, "CONTROLLER_TEST_APP: "+to, 1)
	if extra != "" && !strings.Contains(s, extra) {
		s += extra
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDeployRollbackEnv(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 3)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 2))
	ctx := testenv.Context(t, 60*time.Second)

	// Nothing changed: no release.
	if _, err := h.deploy(ctx, DeployRequest{}); !errors.Is(err, ErrNoChange) {
		t.Fatalf("deploy without change: %v, want ErrNoChange", err)
	}

	// Code change: v2 with a new artifact, pre and post hooks run.
	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact v2\n"), 0o644)
	setMode(t, dir, "serve", "serve", "deploy:\n  max_surge: 1\n  batch_timeout: 6s\n  hooks:\n    pre_deploy: [\"echo migrating $API_KEY\"]\n    post_deploy: [\"echo done\"]\n")
	var log strings.Builder
	v, err := h.deploy(ctx, DeployRequest{Log: &log})
	if err != nil || v != 2 {
		t.Fatalf("deploy v2: %d, %v\n%s", v, err, log.String())
	}
	h.waitFor("v2 serving", onRelease(2, 2))
	if !strings.Contains(log.String(), "[pre_deploy] migrating [redacted]") || !strings.Contains(log.String(), "[post_deploy] done") {
		t.Errorf("hook output missing or not redacted:\n%s", log.String())
	}
	if strings.Contains(log.String(), "sekrit") {
		t.Errorf("secret in deploy log:\n%s", log.String())
	}
	if h.c.Rollout() != nil {
		t.Error("Rollout() not nil after the deploy ended")
	}

	// Broken v3: every instance crashes; the group goes back to v2.
	setMode(t, dir, "serve", "crash", "")
	v, err = h.deploy(ctx, DeployRequest{})
	var de *DeployError
	if !errors.As(err, &de) || v != 3 {
		t.Fatalf("deploy of a crashing v3: %d, %v; want a *DeployError", v, err)
	}
	if de.Progress.Phase != rollout.PhaseRolledBack || de.Progress.Failure == nil {
		t.Errorf("final progress %+v, want rolled_back with a failure", de.Progress)
	}
	h.waitFor("back on v2", onRelease(2, 2))
	r3, _ := h.st.GetRelease("web", 3)
	if r3.Status != api.ReleaseFailed || r3.Change != api.ChangeConfig {
		t.Errorf("v3: status %s change %s, want failed config", r3.Status, r3.Change)
	}

	// Rollback to v1 from its kept artifact.
	setMode(t, dir, "crash", "serve", "")
	if err := h.c.Rollback(ctx, 1); err != nil {
		t.Fatalf("rollback v1: %v", err)
	}
	h.waitFor("v1 serving again", onRelease(1, 2))
	waitEvents(t, h.c, "v2 -> v1 ended done")
	r2, _ := h.st.GetRelease("web", 2)
	if r2.Status != api.ReleaseRolledBack {
		t.Errorf("v2 status %s after rollback, want rolled_back", r2.Status)
	}

	// Env override: a config-only release, no build.
	r1, _ := h.st.GetRelease("web", 1)
	builds := countBuilds(t, h.c)
	v, err = h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{})
	if err != nil {
		t.Fatalf("env set: %d, %v", v, err)
	}
	h.waitFor("env release serving", onRelease(v, 2))
	// Events are stored in order: once the rollout's end is stored, any
	// build event of this deploy is too.
	waitEvents(t, h.c, fmt.Sprintf("-> v%d ended done", v))
	r, _ := h.st.GetRelease("web", v)
	if r.Change != api.ChangeConfig || r.Digest != r1.Digest {
		t.Errorf("env release: change %s digest %s, want config on the v1 artifact %s", r.Change, r.Digest, r1.Digest)
	}
	if n := countBuilds(t, h.c); n != builds {
		t.Errorf("build events %d -> %d: env set built something", builds, n)
	}
	if _, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "PORT", Value: "1"}}, nil, DeployRequest{}); !errors.Is(err, ErrInvalidEnv) {
		t.Errorf("env set PORT: %v, want ErrInvalidEnv", err)
	}
	// While a deploy holds the lock, an env change is refused as a
	// second deploy is: a *rollout.LockedError (409 in the API).
	if err := h.c.dep.lock.TryAcquire("web", rollout.Holder{ID: "other", Release: 9}); err != nil {
		t.Fatal(err)
	}
	var locked *rollout.LockedError
	if _, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "off"}}, nil, DeployRequest{}); !errors.As(err, &locked) || locked.Holder.Release != 9 {
		t.Errorf("env set while v9 deploys: %v, want a *rollout.LockedError naming v9", err)
	}
	if err := h.c.dep.lock.Release("web", "other"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.AbortDeploy(context.Background()); !errors.Is(err, ErrNoRollout) {
		t.Errorf("abort without rollout: %v", err)
	}
}

// countBuilds counts the build events stored so far. Events are stored
// asynchronously, in order: wait for a later event before counting.
func countBuilds(t *testing.T, c *Controller) int {
	t.Helper()
	evs, err := c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == "build" {
			n++
		}
	}
	return n
}

// TestRolloutEndNewRelease: the end of every rollout, done or rolled
// back, moves the pool's release generation on (pool.NewRelease), so the
// balancer's asset cache drops what the targets answered before; nothing
// else in a deploy moves it.
func TestRolloutEndNewRelease(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 60*time.Second)
	gen := h.pool.ReleaseGeneration()

	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact v2\n"), 0o644)
	if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != 2 {
		t.Fatalf("deploy v2: %d, %v", v, err)
	}
	waitEvents(t, h.c, "v1 -> v2 ended done")
	if got := h.pool.ReleaseGeneration(); got != gen+1 {
		t.Errorf("after the rollout to v2: generation %d, want %d", got, gen+1)
	}

	setMode(t, dir, "serve", "crash", "")
	if _, err := h.deploy(ctx, DeployRequest{}); err == nil {
		t.Fatal("deploy of a crashing v3 succeeded")
	}
	waitEvents(t, h.c, "v2 -> v3 ended rolled_back")
	if got := h.pool.ReleaseGeneration(); got != gen+2 {
		t.Errorf("after the rolled back v3: generation %d, want %d", got, gen+2)
	}
}
