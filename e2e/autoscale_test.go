package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// desiredChange finds the change in an autoscale event's reason.
var desiredChange = regexp.MustCompile(`desired (\d+) -> (\d+)`)

// withAutoscale adds an autoscale section to the shoal.yaml in dir.
func withAutoscale(t *testing.T, dir string, section map[string]any) {
	t.Helper()
	p := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["autoscale"] = section
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pacedLoad is about rps GETs per second, from 16 clients, for at most d.
func pacedLoad(rps int, d time.Duration) testenv.LoadOptions {
	const workers = 16
	return testenv.LoadOptions{
		Workers: workers,
		Every:   time.Duration(workers) * time.Second / time.Duration(rps),
		Max:     int(d.Seconds()) * rps / workers,
	}
}

func waitAutoscale(t *testing.T, c *client.Client, what string, max time.Duration, fn func(client.Autoscale, client.Status) error) {
	t.Helper()
	ctx := testenv.Context(t, max)
	var a client.Autoscale
	var st client.Status
	err := testenv.WaitFor(ctx, func() error {
		var err error
		if a, err = c.Autoscale(ctx); err != nil {
			return err
		}
		if st, err = c.Status(ctx); err != nil {
			return err
		}
		return fn(a, st)
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\nautoscale: %+v\nstatus: %+v", what, err, a, st)
	}
}

// TestAutoscaleStepLoad runs `shoal up` on the meteor-like example with a
// requests-per-second policy, applies a step of load through the balancer
// and checks that the group scales out within seconds, that the new
// instances serve, that it scales back in to min after the stabilization
// window once the load stops, and that no request failed over the cycle.
func TestAutoscaleStepLoad(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 4)
	withAutoscale(t, dir, map[string]any{
		"interval":      "500ms",
		"window":        "3s",
		"warmup":        "1s",
		"cooldown_out":  "4s",
		"cooldown_in":   "1s",
		"stabilization": "5s",
		"policies":      []any{map[string]any{"name": "rps", "metric": "rps_per_instance", "target": 20}},
	})
	up := startUp(t, bin, dir)
	c := up.client
	waitStatus(t, c, "1 in service", inService(1))

	// A step of 50 requests per second: 3 instances at about 17 each.
	load := testenv.StartLoad(testenv.Context(t, 5*time.Minute), up.lbURL+"/", pacedLoad(50, 120*time.Second))
	defer load.Stop()
	stepAt := time.Now()

	waitAutoscale(t, c, "desired to rise", 30*time.Second, func(a client.Autoscale, st client.Status) error {
		if st.Desired < 3 {
			return fmt.Errorf("desired %d, want >= 3", st.Desired)
		}
		return nil
	})
	t.Logf("desired rose %s after the load step", time.Since(stepAt).Round(time.Millisecond))
	waitAutoscale(t, c, "new instances serving", 45*time.Second, func(a client.Autoscale, st client.Status) error {
		if st.InService < 3 {
			return fmt.Errorf("%d in service, want >= 3", st.InService)
		}
		busy := 0
		for _, in := range st.Instances {
			if in.State == api.InService && in.RequestsPerSecond > 0 {
				busy++
			}
		}
		if busy < 3 {
			return fmt.Errorf("%d instances take traffic, want >= 3", busy)
		}
		return nil
	})
	t.Logf("3 instances serving %s after the load step", time.Since(stepAt).Round(time.Millisecond))

	a, err := c.Autoscale(testenv.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if a.LastChange == nil || a.LastChange.Direction != "out" || !strings.Contains(a.LastChange.Reason, "rps/instance") ||
		!strings.Contains(a.LastChange.Reason, "target 20") {
		t.Errorf("last change = %+v, want a scale-out explained by rps/instance vs target 20", a.LastChange)
	}
	code, out := runShoal(t, bin, dir, "status")
	if code != 0 || !strings.Contains(out, "POLICY") || !strings.Contains(out, "rps_per_instance") {
		t.Errorf("shoal status (%d) does not show the policy:\n%s", code, out)
	}

	// Load stops: back to min after the stabilization window.
	load.Stop()
	stopAt := time.Now()
	waitAutoscale(t, c, "scale-in to 1", 60*time.Second, func(a client.Autoscale, st client.Status) error {
		if st.Desired != 1 || st.InService != 1 || len(st.Instances) != 1 {
			return fmt.Errorf("desired %d, %d in service of %d instances; want 1", st.Desired, st.InService, len(st.Instances))
		}
		return nil
	})
	if d := time.Since(stopAt); d < 5*time.Second {
		t.Errorf("scaled in %s after the load stopped, before the 5s stabilization window", d)
	}
	t.Logf("back to 1 instance %s after the load stopped", time.Since(stopAt).Round(time.Millisecond))

	load.Check(t, "over the cycle")
	if load.OK() == 0 {
		t.Error("no request succeeded")
	}

	// Events are stored asynchronously: wait for both directions.
	evCtx := testenv.Context(t, 30*time.Second)
	err = testenv.WaitFor(evCtx, func() error {
		evs, err := c.Events(evCtx, 0, 1000)
		if err != nil {
			return err
		}
		var outs, ins int
		for _, e := range evs {
			m := desiredChange.FindStringSubmatch(e.Reason)
			if e.Type != "autoscale" || m == nil {
				continue
			}
			from, _ := strconv.Atoi(m[1])
			to, _ := strconv.Atoi(m[2])
			switch {
			case to > from:
				outs++
			case to < from:
				ins++
			}
		}
		if outs == 0 || ins == 0 {
			return fmt.Errorf("autoscale events: %d out, %d in; want both\n%+v", outs, ins, evs)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// Metrics, pause and resume.
	req, _ := http.NewRequest("GET", up.adminURL+"/metrics", nil)
	tok, _ := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"shoal_autoscale_desired 1", `shoal_autoscale_policy_target_requests_per_second{metric="rps_per_instance",policy="rps"} 20`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, out := runShoal(t, bin, dir, "autoscale", "pause"); code != 0 || !strings.Contains(out, "auto scaling paused") {
		t.Errorf("shoal autoscale pause (%d):\n%s", code, out)
	}
	if a, err := c.Autoscale(context.Background()); err != nil || !a.Paused {
		t.Errorf("after pause: %+v, %v", a, err)
	}
	if code, out := runShoal(t, bin, dir, "autoscale", "resume"); code != 0 || !strings.Contains(out, "auto scaling resumed") {
		t.Errorf("shoal autoscale resume (%d):\n%s", code, out)
	}
}
