package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// startRegistry runs Debian's docker-registry on 127.0.0.1 (which Docker
// engines reach over plain HTTP without configuration) with storage in a
// temp folder, and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		if os.Getenv("SHOAL_REQUIRE_DOCKER") == "1" {
			t.Fatal("SHOAL_REQUIRE_DOCKER=1 and no docker-registry (apt-get install docker-registry)")
		}
		t.Skip("no docker-registry")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the registry binds it next; nothing else here asks for a port by number
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	y := fmt.Sprintf("version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %q}\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, bin, "serve", cfg)
	testenv.Eventually(t, time.Minute, func() error {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	return addr
}

// TestDockerFleetDeployThroughRegistry deploys examples/docker with
// build.registry set to a registry the test runs: `shoal deploy` pushes
// the image there and uploads only the small image artifact naming it; an
// agent on an engine of its own pulls the image by digest (fetching no
// layer from the server) and serves.
func TestDockerFleetDeployThroughRegistry(t *testing.T) {
	cli := dockerEngine(t)
	registry := startRegistry(t)
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "docker", 1, 2)
	removeAppImages(t, cli, "dockerapp")
	p := filepath.Join(app, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["build"].(map[string]any)["registry"] = registry
	if b, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 8*time.Minute)
	engDir, err := os.MkdirTemp("/tmp", "shoal-reg-")
	if err != nil {
		t.Fatal(err)
	}
	own := startDockerd(t, ctx, engDir)
	srv := startLoopbackServer(t, ctx, bin)
	shoal := fleetCLI(t, bin, srv)
	dir := t.TempDir()
	h := newServerAgent(t, srv.FleetURL, "host-r", strings.TrimSpace(shoal(dir, "join-token", "--ttl", "10m")))
	f, err := os.OpenFile(h.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "docker_host: unix://%s/docker.sock\n", engDir)
	f.Close()
	pa := h.start(t, bin)
	testenv.Eventually(t, 30*time.Second, func() error {
		if out := shoal(dir, "hosts"); !strings.Contains(out, "ready") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	out := shoal(app, "deploy")
	if !strings.Contains(out, "deploy: v1 serves") || !strings.Contains(out, "pushed "+registry+"/dockerapp@sha256:") {
		t.Fatalf("shoal deploy: %s", out)
	}
	if strings.Contains(out, "uploading layer") {
		t.Errorf("a layer was uploaded to the server:\n%s", out)
	}
	if _, err := pa.WaitForLine(ctx, regexp.MustCompile(`image pulled.*ref=`+regexp.QuoteMeta(registry))); err != nil {
		t.Fatalf("the agent pulled nothing: %v\n%s", err, pa.Output())
	}
	if n := strings.Count(pa.Output(), "artifact fetched"); n != 1 {
		t.Errorf("the agent fetched %d artifacts from the server, want 1 (the image artifact):\n%s", n, pa.Output())
	}
	if n := len(running(containersOf(t, own, h.data))); n != 1 {
		t.Errorf("%d containers run on the agent's engine, want 1", n)
	}
}
