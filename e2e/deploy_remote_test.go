package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestDeployFromAnotherFolder: `shoal deploy` sends what the release is
// made from, so it works from a folder the daemon has never seen. `shoal
// up` runs in folder A; a copy of the app in folder B is changed and
// deployed from there with SHOAL_ADMIN_URL and SHOAL_TOKEN, while A's
// shoal.yaml no longer loads and A's source is gone. The new release
// serves B's code and settings, B's env_from_host comes from the
// deployer's environment (the daemon's lacks it), the pre-deploy hook runs
// in the unpacked release, and a later `shoal env set` keeps what B
// deployed.
func TestDeployFromAnotherFolder(t *testing.T) {
	bin := testenv.BuildShoal(t)
	a := exampleApp(t, "meteor-like", 1, 2)
	up := startUp(t, bin, a)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 1))
	tok, err := os.ReadFile(filepath.Join(a, ".shoal", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}

	b := filepath.Join(t.TempDir(), "elsewhere")
	copyApp(t, a, b)
	// A is no longer readable as an app: any read of it by the daemon
	// would fail the deploy.
	if err := os.WriteFile(filepath.Join(a, "shoal.yaml"), []byte("app: [broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(a, "main.js")); err != nil {
		t.Fatal(err)
	}

	settings := `{"public":{"deployedFrom":"folder-B"}}`
	if err := os.WriteFile(filepath.Join(b, "settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "B-ONLY.txt"), []byte("packed in folder B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	editYAML(t, b, func(doc map[string]any) {
		doc["run"].(map[string]any)["env_from_host"] = []any{"DEPLOYER_ONLY"}
		doc["deploy"] = map[string]any{"hooks": map[string]any{"pre_deploy": []any{"cat B-ONLY.txt; pwd"}}}
	})

	env := append(os.Environ(), "SHOAL_ADMIN_URL="+up.adminURL, "SHOAL_TOKEN="+strings.TrimSpace(string(tok)),
		"DEPLOYER_ONLY=from-the-deployer-123")
	code, out := runShoalEnv(t, bin, b, env, "deploy")
	if code != 0 || !strings.Contains(out, "built artifact") || !strings.Contains(out, "uploading artifact") ||
		!strings.Contains(out, "[pre_deploy] packed in folder B") || !strings.Contains(out, "deploy: v2 serves") {
		t.Fatalf("shoal deploy from folder B: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "[pre_deploy] "+b) || !strings.Contains(out, "[pre_deploy] "+filepath.Join(a, ".shoal", "hook-")) {
		t.Errorf("the pre-deploy hook did not run in an unpack under the daemon's data directory:\n%s", out)
	}
	if strings.Contains(out, "from-the-deployer-123") {
		t.Errorf("the deployer's secret is in the output:\n%s", out)
	}
	waitStatus(t, up.client, "v2 serving", onReleaseOnly(2, 1))
	if page := get(t, up.lbURL+"/"); !strings.Contains(page, "folder-B") {
		t.Errorf("v2 does not serve folder B's settings:\n%s", page)
	}
	rels, err := up.client.Releases(testenv.Context(t, 10*time.Second))
	if err != nil || len(rels) == 0 || rels[0].Version != 2 || !strings.Contains(strings.Join(rels[0].Env, " "), "DEPLOYER_ONLY=[redacted]") {
		t.Fatalf("releases after the deploy from B: %+v, %v", rels, err)
	}

	// Deployed again unchanged: nothing to upload, nothing to deploy.
	code, out = runShoalEnv(t, bin, b, env, "deploy")
	if code != 0 || !strings.Contains(out, "source unchanged") || strings.Contains(out, "uploading") ||
		!strings.Contains(out, "nothing to deploy") {
		t.Errorf("second deploy from B: exit %d\n%s", code, out)
	}

	// An env change is made from what B deployed, not from any file.
	code, out = runShoalEnv(t, bin, t.TempDir(), env, "env", "set", "FEATURE=on")
	if code != 0 || !strings.Contains(out, "config-only: reusing artifact") || !strings.Contains(out, "v3 serves") {
		t.Fatalf("shoal env set: exit %d\n%s", code, out)
	}
	waitStatus(t, up.client, "v3 serving", onReleaseOnly(3, 1))
	if page := get(t, up.lbURL+"/"); !strings.Contains(page, "folder-B") {
		t.Errorf("v3 lost folder B's settings:\n%s", page)
	}
	stopUp(t, up)
}

// copyApp copies the app folder src to dst, without its data directory.
func copyApp(t *testing.T, src, dst string) {
	t.Helper()
	if err := testenv.CopyApp(src, dst); err != nil {
		t.Fatal(err)
	}
}

// runShoalEnv runs a client verb in dir with environment env, for at most
// 4 minutes: a `shoal deploy` builds the app where it runs, and on a loaded
// 2-core machine (load average 30-47 while several test binaries ran) that
// build alone passed the 60 s this bound used to be, failing tests before
// they reached what they test (seen in TestServerWithTwoAgents and
// TestLBNodeFollowsServer). A verb that hangs still ends the test.
func runShoalEnv(t *testing.T, bin, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	return runShoalFor(t, 4*time.Minute, bin, dir, env, args...)
}

// get returns the body of a GET of url.
func get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
