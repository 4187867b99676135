package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// specHost is a LocalHost that keeps every LaunchSpec it is asked to
// start, and names itself h7 in zone z1 as a fleet host would.
type specHost struct {
	*LocalHost
	mu    sync.Mutex
	specs []LaunchSpec
}

func (h *specHost) Start(ctx context.Context, spec LaunchSpec) (Running, error) {
	h.mu.Lock()
	h.specs = append(h.specs, spec)
	h.mu.Unlock()
	run, err := h.LocalHost.Start(ctx, spec)
	run.Host, run.Zone = "h7", "z1"
	return run, err
}

// declared returns what the instances of release v declared, one entry per
// start.
func (h *specHost) declared(v int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, s := range h.specs {
		if s.Release == v {
			out = append(out, fmt.Sprintf("%v/%d", s.CPU, s.Memory))
		}
	}
	return out
}

// setResources rewrites the run section's cpu and memory of the
// harness's shoal.yaml ("" leaves a key out).
func setResources(t *testing.T, dir, cpu, memory string) *config.App {
	t.Helper()
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "  cpu:") || strings.HasPrefix(l, "  memory:") {
			continue
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "  stop_timeout:") {
			if cpu != "" {
				lines = append(lines, "  cpu: "+cpu)
			}
			if memory != "" {
				lines = append(lines, "  memory: "+memory)
			}
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLaunchCarriesDeclaredCPUAndMemory: each launch carries its release's
// run.cpu and run.memory to the Host; a deploy that changes only them is a
// config-only release whose instances carry the new values; and the
// status shows where each instance runs (the Host's Running.Host, Zone).
func TestLaunchCarriesDeclaredCPUAndMemory(t *testing.T) {
	dir := t.TempDir()
	writeApp(t, dir, "serve", 2, 3)
	cfg := setResources(t, dir, "0.5", "64MiB")
	var sh *specHost
	h := startOn(t, dir, cfg, pool.Options{Name: "web", DrainTimeout: time.Second}, func(l *LocalHost) Host {
		sh = &specHost{LocalHost: l}
		return sh
	})
	st := h.waitFor("2 in service", inService(2))
	if got := sh.declared(1); strings.Join(got, " ") != "0.5/67108864 0.5/67108864" {
		t.Errorf("v1 launches declared %v, want 0.5 CPU and 64MiB each", got)
	}
	for _, in := range st.Instances {
		if in.Host != "h7" || in.Zone != "z1" {
			t.Errorf("instance %s: host %q zone %q, want the Host's h7 in z1", in.ID, in.Host, in.Zone)
		}
	}
	if st.Host != "local" {
		t.Errorf("status host %q, want the Host's Name (local)", st.Host)
	}

	ctx := testenv.Context(t, 60*time.Second)
	setResources(t, dir, "1", "")
	v, err := h.deploy(ctx, DeployRequest{By: "test"})
	if err != nil {
		t.Fatalf("deploy of a cpu and memory change: %v", err)
	}
	rel, err := h.st.GetRelease("web", v)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Change != api.ChangeConfig || rel.CPU != 1 || rel.Memory != 0 {
		t.Errorf("v%d: change %q cpu %v memory %d, want a config change declaring 1 CPU and no memory", v, rel.Change, rel.CPU, rel.Memory)
	}
	if got := sh.declared(v); len(got) != 2 || got[0] != "1/0" || got[1] != "1/0" {
		t.Errorf("v%d launches declared %v, want 1 CPU and no memory each", v, got)
	}
	if _, err := h.deploy(ctx, DeployRequest{By: "test"}); !errors.Is(err, ErrNoChange) {
		t.Errorf("deploy of the same declaration: %v, want ErrNoChange", err)
	}
}
