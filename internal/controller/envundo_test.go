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
	"github.com/shoal-dev/shoal/internal/hooks"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestSetEnvPutBackWhenItsReleaseDoesNotRun: an env change whose release
// is never made (its pre-deploy hook refuses it) or is rolled back (its
// instances crash) leaves the stored overrides as they were, so that
// `shoal env list` shows what runs.
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

	// A deployed pre-deploy hook that refuses FEATURE=new.
	setMode(t, dir, "serve", "serve\n    HOOKED: yes", "deploy:\n  hooks:\n    pre_deploy: [\"test \\\"$FEATURE\\\" != new\"]\n")
	if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != 3 {
		t.Fatalf("deploy of the hook: v%d, %v", v, err)
	}
	h.waitFor("v3 serving", onRelease(3, 1))

	// No release: the hook refuses it.
	v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "new"}, {Name: "EXTRA", Value: "x"}}, nil, DeployRequest{})
	var he *hooks.HookError
	if !errors.As(err, &he) || v != 0 {
		t.Fatalf("env set refused by the pre-deploy hook: v%d, %v; want a *hooks.HookError and no release", v, err)
	}
	if got := overrides(); got != want {
		t.Errorf("overrides after a change that made no release: %s, want %s", got, want)
	}

	// A release that is rolled back: its instances crash.
	v, err = h.c.SetEnv(ctx, []api.EnvVar{{Name: "CONTROLLER_TEST_APP", Value: "crash"}}, []string{"NOT_SET"}, DeployRequest{})
	if err == nil || v != 4 {
		t.Fatalf("env set with crashing instances: v%d, %v; want v4 and an error", v, err)
	}
	if cur := h.c.Release().Version; cur != 3 {
		t.Fatalf("the group runs v%d after a failed env change, want v3", cur)
	}
	if got := overrides(); got != want {
		t.Errorf("overrides after a rolled-back change: %s, want %s", got, want)
	}
}

// TestSetEnvReadsNoFile: `shoal env set` makes its release from what the
// current release was deployed with; an edit of shoal.yaml that was not
// deployed, even a broken one, is not picked up.
func TestSetEnvReadsNoFile(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 60*time.Second)

	p := filepath.Join(dir, "shoal.yaml")
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(good), "CONTROLLER_TEST_APP: serve", "CONTROLLER_TEST_APP: serve\n    EDITED: yes", 1)
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{})
	if err != nil || v != 2 {
		t.Fatalf("env set: v%d, %v", v, err)
	}
	h.waitFor("v2 serving", onRelease(2, 1))
	r1, _ := h.st.GetRelease("web", 1)
	r2, err := h.st.GetRelease("web", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := envFromStore(r2.Env).Get("EDITED"); ok {
		t.Errorf("v2 picked up an edit of shoal.yaml that was never deployed: %v", r2.Redacted().Env)
	}
	if v, _ := envFromStore(r2.Env).Get("FEATURE"); v != "on" {
		t.Errorf("v2 lacks the override: %v", r2.Redacted().Env)
	}
	if r2.Config != r1.Config || r2.Config != string(good) || r2.Digest != r1.Digest {
		t.Errorf("v2 not made from v1's stored config and artifact:\n%s", r2.Config)
	}
	if fmt.Sprint(r2.DeployedEnv) != fmt.Sprint(r1.DeployedEnv) {
		t.Errorf("v2's deployed env %v, want v1's %v (overrides apart)", r2.Redacted().DeployedEnv, r1.Redacted().DeployedEnv)
	}
	if _, ok := envFromStore(r2.DeployedEnv).Get("FEATURE"); ok {
		t.Error("the override is in the deployed env; it must only be in Env")
	}

	// A broken file does not stop it either.
	if err := os.WriteFile(p, append(good, "no_such_key: 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "off"}}, nil, DeployRequest{}); err != nil || v != 3 {
		t.Fatalf("env set with a broken shoal.yaml on disk: v%d, %v", v, err)
	}
	h.waitFor("v3 serving", onRelease(3, 1))
}

// TestSetEnvKeptWhenItsCallerLeaves: an env change whose call ends while
// its release's rollout goes on (a follower's forward broke) keeps the
// stored overrides: the release serves them, and a client that follows
// the deploy to its end finds them stored. (They were put back, and an
// acknowledged env write was lost: the e2e linearizability test.)
func TestSetEnvKeptWhenItsCallerLeaves(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 90*time.Second)

	call, leave := context.WithCancel(ctx)
	defer leave()
	go func() {
		defer leave()
		testenv.WaitFor(ctx, func() error {
			if hd, _, held := h.c.dep.lock.Holder("web"); !held || hd.Release != 2 {
				return errors.New("no rollout to v2 yet")
			}
			return nil
		})
	}()
	v, err := h.c.SetEnv(call, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{})
	if err == nil || v != 2 || !strings.Contains(err.Error(), "goes on") {
		t.Fatalf("env set whose caller left mid-rollout: v%d, %v; want v2 and an error saying the rollout goes on", v, err)
	}
	h.waitFor("v2 serving", onRelease(2, 1))
	vs, err := h.st.EnvOverrides("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Name != "FEATURE" || vs[0].Value != "on" {
		t.Fatalf("overrides after the rollout the caller left: %v, want FEATURE=on", vs)
	}
}
