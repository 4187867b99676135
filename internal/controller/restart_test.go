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
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// editFile replaces old with new in dir/name, which must contain old.
func editFile(t *testing.T, dir, name, old, new string) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", name, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reload loads shoal.yaml again, as a new `shoal up` does.
func reload(t *testing.T, cfg *config.App) *config.App {
	t.Helper()
	cfg, err := config.Load(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// environOf returns the environment of a running process.
func environOf(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestRestartResumesStoredRelease checks that a restart runs the stored
// active release as it is, with its env overrides and secrets, and makes
// no release from the source left in the folder by a deploy that was
// rolled back or refused: it only reports the difference.
func TestRestartResumesStoredRelease(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	editFile(t, dir, "shoal.yaml", "keep_releases: 2", "keep_releases: 5")
	cfg = reload(t, cfg)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 120*time.Second)
	if notes := h.c.StartNotes(); len(notes) != 0 {
		t.Errorf("first start notes %q, want none", notes)
	}

	// Env overrides, a secret and a plain one: v2 and v3.
	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "OVERRIDE_SECRET", Value: "hush-42", Secret: true}}, nil, DeployRequest{}); err != nil || v != 2 {
		t.Fatalf("env set secret: v%d, %v", v, err)
	}
	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "OVERRIDE_PLAIN", Value: "on"}}, nil, DeployRequest{}); err != nil || v != 3 {
		t.Fatalf("env set plain: v%d, %v", v, err)
	}
	// A code deploy (v4), rolled back to v3.
	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact v4\n"), 0o644)
	if v, err := h.deploy(ctx, DeployRequest{}); err != nil || v != 4 {
		t.Fatalf("deploy v4: v%d, %v", v, err)
	}
	if err := h.c.Rollback(ctx, 0); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	h.waitFor("v3 serving", onRelease(3, 1))
	// A deploy refused by its pre-deploy hook leaves its source behind.
	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact refused\n"), 0o644)
	setMode(t, dir, "serve", "serve", "deploy:\n  hooks:\n    pre_deploy: [\"exit 7\"]\n")
	if _, err := h.deploy(ctx, DeployRequest{}); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("deploy with a failing pre-deploy hook: %v", err)
	}
	waitEvents(t, h.c, "deploy stopped")
	builds := countBuilds(t, h.c)
	h.stop()

	h2 := start(t, dir, reload(t, cfg))
	st := h2.waitFor("v3 serving after the restart", onRelease(3, 1))
	want := `the source differs from the active release v3; run "shoal deploy" to release it`
	if notes := h2.c.StartNotes(); len(notes) != 1 || notes[0] != want {
		t.Errorf("start notes %q, want [%q]", notes, want)
	}
	waitEvents(t, h2.c, "resuming the active release v3", want)
	if n := countBuilds(t, h2.c); n != builds {
		t.Errorf("build events %d -> %d: the restart built", builds, n)
	}
	rels, err := h2.st.Releases("web")
	if err != nil || len(rels) != 4 {
		t.Fatalf("releases after the restart: %d, %v; want the 4 made before", len(rels), err)
	}
	if rels[0].Status != api.ReleaseRolledBack || rels[1].Status != api.ReleaseActive || rels[1].Served.IsZero() {
		t.Errorf("v4 %s, v3 %s (served %v): want rolled_back and active", rels[0].Status, rels[1].Status, rels[1].Served)
	}
	env := environOf(t, st.Instances[0].PID)
	for _, kv := range []string{"OVERRIDE_SECRET=hush-42", "OVERRIDE_PLAIN=on", "CONTROLLER_TEST_APP=serve"} {
		if !contains(env, kv) {
			t.Errorf("instance env lacks %s: %q", kv, env)
		}
	}
}

// TestRestartReportsRunConfigChange checks that a run configuration edited
// in shoal.yaml while shoal was down is reported, not released.
func TestRestartReportsRunConfigChange(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 1)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	h.stop()
	editFile(t, dir, "shoal.yaml", "CONTROLLER_TEST_APP: serve", "CONTROLLER_TEST_APP: serve\n    EDITED: \"yes\"")

	h2 := start(t, dir, reload(t, cfg))
	st := h2.waitFor("v1 serving after the restart", onRelease(1, 1))
	want := `shoal.yaml's run configuration (command, env, cpu or memory) differs from the active release v1; "shoal deploy" makes a config-only release of it`
	if notes := h2.c.StartNotes(); len(notes) != 1 || notes[0] != want {
		t.Errorf("start notes %q, want [%q]", notes, want)
	}
	if rels, _ := h2.st.Releases("web"); len(rels) != 1 {
		t.Errorf("%d releases after the restart, want 1", len(rels))
	}
	if env := environOf(t, st.Instances[0].PID); contains(env, "EDITED=yes") {
		t.Error("the instance runs with the env edited while shoal was down")
	}
}

// TestRestartWithoutArtifactFails checks that a missing artifact of the
// active release stops the start with a clear error instead of a rebuild.
func TestRestartWithoutArtifactFails(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 1)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	digest := h.c.Release().Digest
	h.stop()
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := arts.Delete(digest); err != nil {
		t.Fatal(err)
	}

	h2 := start(t, dir, reload(t, cfg))
	var runErr error
	select {
	case runErr = <-h2.done:
		h2.cancel() // Run has returned: the harness's stop must not wait for it
		h2.cancel = nil
		h2.rt.Close(context.Background())
		<-h2.host.Done()
		h2.st.Close()
	case <-testenv.Context(t, 30*time.Second).Done():
		t.Fatal("Run did not fail")
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "the active release v1 cannot run: its artifact "+digest+" is missing") {
		t.Errorf("Run = %v, want the missing artifact of v1 named", runErr)
	}
	if arts.Has(digest) {
		t.Error("the artifact was rebuilt")
	}
}

// TestAbandonedPendingReleaseFails checks that a release left pending by
// a deploy that ended without a rollout record is marked failed at the
// next start.
func TestAbandonedPendingReleaseFails(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 1)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	v1 := h.c.Release()
	h.stop()
	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutRelease(api.Release{App: "web", Digest: v1.Digest, Command: v1.Command, Env: v1.Env,
		ConfigFingerprint: "other", Change: api.ChangeConfig}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	h2 := start(t, dir, reload(t, cfg))
	h2.waitFor("v1 serving", onRelease(1, 1))
	waitEvents(t, h2.c, "v2 never served: its deploy was abandoned")
	if r2, _ := h2.st.GetRelease("web", 2); r2.Status != api.ReleaseFailed {
		t.Errorf("abandoned v2: %s, want failed", r2.Status)
	}
}

// TestNeverServedIsNoRollbackTarget checks that an aborted release that
// never served is recorded failed, that a rollback without a version goes
// to the last release that served, and the messages for releases that do
// not exist or were pruned.
func TestNeverServedIsNoRollbackTarget(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	editFile(t, dir, "shoal.yaml", "keep_releases: 2", "keep_releases: 3")
	cfg = reload(t, cfg)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 120*time.Second)

	// v2 boots for a minute; the deploy is aborted while it boots.
	orig, err := os.ReadFile(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	slowBoot(t, dir, cfg, "60")
	res := make(chan error, 1)
	go func() {
		_, err := h.deploy(ctx, DeployRequest{})
		res <- err
	}()
	err = testenv.WaitFor(ctx, func() error {
		p := h.c.Rollout()
		if p == nil {
			return errors.New("no rollout yet")
		}
		for _, in := range p.Instances {
			if in.Release == 2 && in.State == api.Starting {
				return nil
			}
		}
		return errors.New("no v2 instance starting")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.AbortDeploy(ctx); err != nil {
		t.Fatal(err)
	}
	var de *DeployError
	if err := <-res; !errors.As(err, &de) || de.Progress.Phase != rollout.PhaseAborted {
		t.Fatalf("aborted deploy: %v", err)
	}
	if r2, _ := h.st.GetRelease("web", 2); r2.Status != api.ReleaseFailed || r2.HasServed() {
		t.Errorf("aborted v2 that never served: %s (served %v), want failed", r2.Status, r2.Served)
	}

	// v3 (config-only) serves; the previous release that served is v1.
	if err := os.WriteFile(cfg.File, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{}); err != nil || v != 3 {
		t.Fatalf("env set: v%d, %v", v, err)
	}
	infos, err := h.c.Releases()
	if err != nil {
		t.Fatal(err)
	}
	for _, ri := range infos {
		if ri.Previous != (ri.Version == 1) {
			t.Errorf("v%d previous %v; want only v1 previous", ri.Version, ri.Previous)
		}
	}
	if err := h.c.Rollback(ctx, 0); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	h.waitFor("v1 serving", onRelease(1, 1))

	err = h.c.Rollback(ctx, 9)
	want := "unknown release v9: it does not exist (the newest release is v3); releases that can be rolled back to: v3, v2 (never served)"
	if !errors.Is(err, ErrUnknownRelease) || err.Error() != want {
		t.Errorf("rollback v9: %v\nwant %s", err, want)
	}
	// v4 on v1; v1 is then pruned (keep_releases 3).
	if v, err := h.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "off"}}, nil, DeployRequest{}); err != nil || v != 4 {
		t.Fatalf("env set: v%d, %v", v, err)
	}
	err = h.c.Rollback(ctx, 1)
	want = "unknown release v1: it was pruned (keep_releases 3); releases that can be rolled back to: v3, v2 (never served)"
	if !errors.Is(err, ErrUnknownRelease) || err.Error() != want {
		t.Errorf("rollback v1: %v\nwant %s", err, want)
	}
}

// TestReleaseThatCannotStartFailsAtOnce rolls out a release whose artifact
// cannot be unpacked: its first launch fails the rollout and the release,
// with the reason.
func TestReleaseThatCannotStartFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	v1 := h.c.Release()
	h.stop()

	// v2 names an artifact whose file is not a gzip stream.
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := release.DigestPrefix + strings.Repeat("ab", 32)
	if err := os.WriteFile(arts.Path(bad), []byte("not a tar.gz"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutRelease(api.Release{App: "web", Digest: bad, Command: v1.Command, Env: v1.Env,
		ConfigFingerprint: v1.ConfigFingerprint, Change: api.ChangeCode}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	h2 := start(t, dir, reload(t, cfg))
	h2.waitFor("v1 serving", onRelease(1, 1))
	err = h2.c.Rollback(testenv.Context(t, 60*time.Second), 2)
	var de *DeployError
	if !errors.As(err, &de) || de.Progress.Phase != rollout.PhaseRolledBack || !strings.Contains(err.Error(), "release v2 cannot start: ") {
		t.Fatalf("rollout to v2: %v; want rolled back because v2 cannot start", err)
	}
	if r2, _ := h2.st.GetRelease("web", 2); r2.Status != api.ReleaseFailed {
		t.Errorf("v2 status %s, want failed", r2.Status)
	}
	waitEvents(t, h2.c, "release v2 cannot start: start web-v2-", "-> v2 ended rolled_back")
	evs, err := h2.c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	launches := 0
	for _, e := range evs {
		if e.Type == "state" && e.Release == 2 && e.State == "pending" {
			launches++
		}
	}
	if launches != 1 {
		t.Errorf("%d launches of v2, want 1: a release that cannot start is not retried", launches)
	}
}

// TestDeployErrorsSayItOnce checks the texts of a failed build and of a
// deploy with nothing to do, and that a failed build is an event.
func TestDeployErrorsSayItOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 1)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 60*time.Second)

	_, err := h.deploy(ctx, DeployRequest{})
	if want := "nothing to deploy: v1 already runs this artifact and run configuration"; err == nil || err.Error() != want {
		t.Errorf("deploy without change: %v\nwant %s", err, want)
	}
	setMode(t, dir, "serve", "serve", "build:\n  command: echo compiling sekrit-value-123; exit 3\n")
	var log strings.Builder
	_, err = h.deploy(ctx, DeployRequest{Log: &log})
	if want := `build command "echo compiling [redacted]; exit 3" exited with status 3`; err == nil || err.Error() != want {
		t.Errorf("deploy with a failing build: %v\nwant %s", err, want)
	}
	waitEvents(t, h.c, `build v0 build failed: build command "echo compiling [redacted]; exit 3" exited with status 3`)
	if ev := eventsText(t, h.c); strings.Contains(ev, "sekrit") || strings.Contains(log.String(), "sekrit") {
		t.Errorf("secret in events or log:\n%s\n%s", ev, log.String())
	}
}
