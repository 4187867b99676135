package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// exampleApp copies examples/<name> into a temp dir and rewrites its
// shoal.yaml for a test: ephemeral ports, health checks of 1s (3 failures
// in a row make an instance unhealthy), the given
// desired count and max. It skips the test when the example or its
// runtime (node) is missing.
func exampleApp(t *testing.T, name string, desired, max int) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "examples", name)
	if _, err := os.Stat(filepath.Join(src, "shoal.yaml")); err != nil {
		t.Skipf("example %s not present: %v", name, err)
	}
	if name == "meteor-like" {
		if _, err := exec.LookPath("node"); err != nil {
			t.Skip("node not installed")
		}
	}
	dst := t.TempDir()
	err = testenv.CopyApp(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	b, err := os.ReadFile(filepath.Join(dst, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	section := func(k string) map[string]any {
		m, _ := doc[k].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[k] = m
		}
		return m
	}
	section("balancer")["listen"] = "127.0.0.1:0"
	section("balancer")["drain_timeout"] = "2s"
	section("admin")["listen"] = "127.0.0.1:0"
	// Bounds a loaded 2-core CI machine meets (race-built shoal, other
	// tests beside it): 200ms/200ms/2 marked serving instances unhealthy
	// under load (TestDeployUnderLoad drained both old instances mid
	// rollout). An unhealthy instance is still found in about 3-6 s.
	h := section("health")
	h["interval"], h["timeout"], h["unhealthy_threshold"], h["grace"] = "1s", "1s", 3, "20s"
	g := section("group")
	g["min"], g["desired"], g["max"], g["max_replacing"] = 1, desired, max, 2
	delete(doc, "data_dir")
	run := section("run")
	run["stop_timeout"] = "3s"
	if env, ok := run["env"].(map[string]any); ok && env["BOOT_DELAY_MS"] != nil {
		env["BOOT_DELAY_MS"] = "300" // a slow boot, but not too slow for a test
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "shoal.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// upProcess is a running `shoal up` and what its ready line said.
type upProcess struct {
	p        *testenv.Process
	release  string
	lbURL    string
	adminURL string
	client   *client.Client
}

// startUp runs `shoal up` in dir (testenv.StartUp) and waits for its
// ready line; the process is closed when the test ends, and its output
// logged if the test failed.
func startUp(t *testing.T, bin, dir string) *upProcess {
	t.Helper()
	u, err := testenv.StartUp(testenv.Context(t, 90*time.Second), bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.Close()
		if t.Failed() {
			t.Logf("output of shoal up:\n%s", u.Output())
		}
	})
	return &upProcess{p: u.Process, release: u.Release, lbURL: u.LBURL, adminURL: u.AdminURL,
		client: client.New(u.AdminURL, u.Token)}
}

// shoal runs a client verb in dir and returns its exit code and output.
func runShoal(t *testing.T, bin, dir string, args ...string) (int, string) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("shoal %v: %v", args, err)
	}
	return 0, string(out)
}

// waitGone waits until none of pids is alive (zombies of other parents
// count as gone: signal 0 fails only for reaped processes, so /proc state
// is checked too).
func waitGone(ctx context.Context, pids []int) error {
	return testenv.WaitFor(ctx, func() error {
		for _, pid := range pids {
			if alive(pid) {
				return fmt.Errorf("pid %d still alive", pid)
			}
		}
		return nil
	})
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the ")" that ends the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// stopUp ends a `shoal up` with SIGTERM and checks it exits 0.
func stopUp(t *testing.T, u *upProcess) {
	t.Helper()
	if err := u.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := u.p.Wait(testenv.Context(t, 60*time.Second)); err != nil || code != 0 {
		t.Fatalf("shoal up after SIGTERM: exit %d, %v\n%s", code, err, u.p.Output())
	}
}
