package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestDeploySendsWhatTheReleaseIsMadeFrom: `shoal deploy` reads shoal.yaml
// and the environment where it runs: a bad file or a missing env_from_host
// variable is a usage error and nothing is sent; otherwise the config's
// text, the resolved env (env_from_host from the CLI's own environment)
// and, after building and asking whether the daemon holds it, the
// artifact's upload go to the admin API.
func TestDeploySendsWhatTheReleaseIsMadeFrom(t *testing.T) {
	f := newFakeAdmin(t, "ci-token")
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(envAdminURL, f.URL)
	t.Setenv(envToken, "ci-token")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index.txt", "v1\n")

	write("shoal.yaml", "app: web\nrun:\n  command: ./web\n  bogus: 1\n")
	code, _, errs := runCLI(t, "deploy")
	if code != ExitUsage || !strings.Contains(errs, "shoal.yaml:4:3") || len(f.requests()) != 0 {
		t.Errorf("deploy of a bad shoal.yaml: exit %d, requests %q; want 2, file:line:col and none\n%s", code, f.requests(), errs)
	}

	good := "app: web\nrun:\n  command: ./web\n  env_from_host: [DEPLOYER_KEY]\n"
	write("shoal.yaml", good)
	t.Setenv("DEPLOYER_KEY", "")
	os.Unsetenv("DEPLOYER_KEY")
	code, _, errs = runCLI(t, "deploy")
	if code != ExitUsage || !strings.Contains(errs, "DEPLOYER_KEY is not set") || len(f.requests()) != 0 {
		t.Errorf("deploy without an env_from_host variable: exit %d; want 2 and nothing sent\n%s", code, errs)
	}

	t.Setenv("DEPLOYER_KEY", "from-the-cli")
	runCLI(t, "deploy", "--config-only") // the fake has no deploy route
	// Before the deploy, the newest release is read: a deploy whose
	// stream breaks is followed from the release after it.
	got := f.requests()
	if len(got) != 2 || got[0] != "GET /v1/releases" || !strings.HasPrefix(got[1], "POST /v1/deploy ") {
		t.Fatalf("deploy --config-only sent %q, want GET /v1/releases then one POST /v1/deploy", got)
	}
	got = got[1:]
	var req api.DeployRequest
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got[0], "POST /v1/deploy ")), &req); err != nil {
		t.Fatal(err)
	}
	sent := map[string]api.EnvVar{}
	for _, v := range req.Env {
		sent[v.Name] = v
	}
	if !req.ConfigOnly || req.Digest != "" || req.Config != good || req.ConfigFile != filepath.Join(dir, "shoal.yaml") ||
		sent["DEPLOYER_KEY"] != (api.EnvVar{Name: "DEPLOYER_KEY", Value: "from-the-cli", Secret: true}) || sent["ROOT_URL"].Value == "" {
		t.Errorf("deploy --config-only sent %+v", req)
	}

	code, out, errs := runCLI(t, "deploy")
	got = f.requests()
	if code != ExitFailure || len(got) != 3 || got[0] != "GET /v1/releases" || !strings.HasPrefix(got[1], "HEAD /v1/artifacts/sha256:") ||
		!strings.HasPrefix(got[2], "PUT /v1/artifacts/sha256:") || !strings.Contains(out, "built artifact") || !strings.Contains(out, "uploading artifact") {
		t.Errorf("deploy: exit %d, requests %q; want releases, HEAD, PUT (refused by the fake)\n%s%s", code, got, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, ".shoal", "artifacts", "index.json")); err != nil {
		t.Errorf("the artifact was not built into .shoal/artifacts: %v", err)
	}
}
