// Package browser drives the dashboard in a real browser: Debian's
// chromium through playwright-core (run.mjs), against the dashboard served
// with the simulated demo source. Set SHOAL_SCREENSHOTS=1 to refresh the
// screenshots in docs/screenshots.
package browser

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
)

const chromiumPath = "/usr/bin/chromium"

func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH (apt-get install -y nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		t.Skip("playwright-core is not installed: run `npm ci --no-audit --no-fund` in e2e/browser")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	src := demo.New(demo.Options{Tick: 250 * time.Millisecond, StartTicks: 2, Backfill: true, Seed: 42})
	ui := dashboard.New(dashboard.Options{Token: "browser-test-token", Source: src})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/demo/", demo.Controls(src))
	srv := httptest.NewServer(mux)

	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- src.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("demo source: %v", err)
		}
		ui.Close()
		srv.Close()
	}()

	cmd := exec.CommandContext(ctx, node, "run.mjs", srv.URL)
	cmd.Env = append(os.Environ(),
		"SHOAL_TOKEN=browser-test-token",
		"SHOAL_APP=web",
		"KILL_URL="+srv.URL+"/demo/kill",
		"DEPLOY_URL="+srv.URL+"/demo/deploy",
		"STEP_TIMEOUT_MS=60000",
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("run.mjs output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v", err)
	}
}
