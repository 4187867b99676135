package controller

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestAppCreatedByItsFirstDeploy: a controller started on a sent
// configuration (config.ParseSent, as `shoal server` creates an app) with
// nothing stored builds nothing and runs nothing; a first deploy without
// an artifact is refused; the first deploy with one runs the pre-deploy
// hook, makes v1 and rolls the group out from zero to its desired count. A
// restart resumes v1 with no note about an app folder (there is none).
func TestAppCreatedByItsFirstDeploy(t *testing.T) {
	dir := t.TempDir()
	writeApp(t, dir, "serve", 2, 3)
	// group.min 1: before the first release the group still runs nothing.
	path := filepath.Join(dir, "shoal.yaml")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(text), "  min: 0\n", "  min: 1\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "hook-ran")
	setMode(t, dir, "serve", "serve", "deploy:\n  hooks:\n    pre_deploy: ['echo \"$SHOAL_HOOK\" > "+marker+"']\n")
	text, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := config.ParseSent(path, text)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, dir, sent)
	ctx := testenv.Context(t, 60*time.Second)
	select {
	case <-h.c.Ready():
	case <-ctx.Done():
		t.Fatal("a controller with no release is not ready")
	}
	if st := h.c.Status(); len(st.Instances) != 0 || h.c.Release().Version != 0 {
		t.Fatalf("before the first deploy: release v%d, %d instances", h.c.Release().Version, len(st.Instances))
	}
	if arts, _ := h.c.o.Artifacts.List(); len(arts) != 0 {
		t.Fatalf("a sent configuration was built: %v", arts)
	}

	// Build where the deployer is, as shoal deploy does.
	local, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := local.Env(h.c.lookupEnv())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Deploy(ctx, DeployRequest{Config: sent, Env: storeEnv(env)}); !errors.Is(err, ErrUnknownArtifact) ||
		!strings.Contains(err.Error(), "no release yet") {
		t.Fatalf("a first deploy without an artifact: %v, want ErrUnknownArtifact saying there is no release", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the hook ran for a refused deploy: %v", err)
	}
	art, _, err := h.c.buildArtifact(ctx, local, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.c.Deploy(ctx, DeployRequest{Config: sent, Env: storeEnv(env), Digest: art.Digest})
	if err != nil || v != 1 {
		t.Fatalf("first deploy: v%d, %v", v, err)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "pre_deploy" {
		t.Fatalf("the pre-deploy hook did not run: %q, %v", b, err)
	}
	h.waitFor("v1 serving", onRelease(1, 2))
	rel, err := h.st.GetRelease("web", 1)
	if err != nil || rel.Change != api.ChangeInitial || rel.Status != api.ReleaseActive || rel.Config != string(text) {
		t.Fatalf("v1 = %+v, %v", rel, err)
	}
	if g, _, _ := h.st.GetGroup("web"); g.Desired != 2 || g.Min != 1 || g.Release != 1 {
		t.Fatalf("group = %+v, want min 1, desired 2 on v1", g)
	}

	h.stop()
	h = start(t, dir, sent)
	h.waitFor("v1 serving again", onRelease(1, 2))
	if notes := h.c.StartNotes(); len(notes) != 0 {
		t.Fatalf("notes about an app folder for a sent configuration: %q", notes)
	}
}
