package adminapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/client"
)

func TestDeployRoutesNeedToken(t *testing.T) {
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("right-token", mux))
	defer srv.Close()
	routes := []struct{ method, path, body string }{
		{"POST", "/v1/deploy", `{}`},
		{"POST", "/v1/deploy", `{"config_only":true}`},
		{"POST", "/v1/deploy/abort", ""},
		{"POST", "/v1/deploy/build-failed", `{"reason":"build command \"exit 3\" exited with status 3"}`},
		{"GET", "/v1/deploy", ""},
		{"POST", "/v1/rollback", `{"version":1}`},
		{"GET", "/v1/env", ""},
		{"POST", "/v1/env", `{"set":[{"name":"A","value":"b"}]}`},
	}
	for _, tok := range []string{"", "wrong-token"} {
		for _, r := range routes {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r.method, r.path, tok, resp.StatusCode)
			}
		}
	}
}

// TestDeployRoutesErrors checks the answers that come before any
// streaming: a controller that is not running, no rollout to abort, bad
// bodies.
func TestDeployRoutesErrors(t *testing.T) {
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	if p, err := c.Rollout(ctx); err != nil || p != nil {
		t.Errorf("GET /v1/deploy with no rollout: %+v, %v", p, err)
	}
	if err := c.AbortDeploy(ctx); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("abort with no rollout: %v, want 409", err)
	}
	sent := client.DeployOptions{ConfigOnly: true, Config: "app: web\nrun:\n  command: sleep 100\n", ConfigFile: "/elsewhere/shoal.yaml"}
	if _, err := c.Deploy(ctx, sent, nil); !client.IsStatus(err, http.StatusInternalServerError) ||
		!strings.Contains(err.Error(), "not running") {
		t.Errorf("deploy on a stopped controller: %v, want 500 not running", err)
	}
	if _, err := c.Deploy(ctx, client.DeployOptions{}, nil); !client.IsStatus(err, http.StatusBadRequest) ||
		!strings.Contains(err.Error(), "shoal deploy must send shoal.yaml's text") {
		t.Errorf("deploy without a configuration: %v, want 400 saying the CLI must send it", err)
	}
	bad := []struct {
		name string
		opts client.DeployOptions
		want string
	}{
		{"no digest", client.DeployOptions{Config: sent.Config}, "names no artifact"},
		{"config only with a digest", client.DeployOptions{ConfigOnly: true, Config: sent.Config, Digest: "sha256:" + strings.Repeat("0", 64)}, "send no digest"},
		{"bad config", client.DeployOptions{ConfigOnly: true, Config: "app: web\nrun:\n  command: x\nbogus: 1\n", ConfigFile: "/elsewhere/shoal.yaml"},
			"/elsewhere/shoal.yaml:4:1"},
	}
	for _, b := range bad {
		if _, err := c.Deploy(ctx, b.opts, nil); !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("deploy, %s: %v, want 400 saying %q", b.name, err, b.want)
		}
	}
	if _, err := c.SetEnv(ctx, []client.EnvVar{{Name: "PORT", Value: "1"}}, nil, nil); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("env set PORT: %v, want 400", err)
	}
	for _, body := range []string{`{"bogus":1}`, `{"version":-1}`, `[]`} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/rollback", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("rollback body %s: %d, want 400", body, resp.StatusCode)
		}
	}
	if vs, err := c.Env(ctx); err != nil || len(vs) != 0 {
		t.Errorf("env list: %v, %v", vs, err)
	}
}

// TestBuildFailureRecorded: a build that failed where shoal deploy ran is
// reported with POST /v1/deploy/build-failed and stored as a "build"
// event naming the deployer; a report without a reason is refused.
func TestBuildFailureRecorded(t *testing.T) {
	mux := http.NewServeMux()
	ctrl := newTestController(t)
	DeployRoutes(mux, ctrl)
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	if err := c.ReportBuildFailure(ctx, "  \n", "ann@box"); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("a report without a reason: %v, want 400", err)
	}
	if err := c.ReportBuildFailure(ctx, `build command "exit 3" exited with status 3`, "ann@box"); err != nil {
		t.Fatal(err)
	}
	evs, err := ctrl.Events(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := `build failed: build command "exit 3" exited with status 3 (shoal deploy by ann@box)`
	var builds []string
	for _, e := range evs {
		if e.Type == "build" {
			builds = append(builds, e.Reason)
		}
	}
	if len(builds) != 1 || builds[0] != want {
		t.Errorf("build events %q, want exactly %q", builds, want)
	}
}
