package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// longPollApp writes a shoal.yaml whose instances are the stickiness
// test's Node server (socket.io polling, SockJS under /sockjs) and whose
// only autoscale policy is p95 latency against 3s over 6s. The server
// holds a socket.io poll about 6 s (its ping interval) and a SockJS poll
// up to 25 s (its heartbeat): counted, the three socket.io clients' polls
// alone would be about a tenth of a window's requests and put its p95 at
// their 6 s. The page requests beside them take milliseconds; on a
// machine loaded far beyond a test run's (load average 25 on two cores)
// one of them took 2.1 s, which with a 1.5 s target over 3 s (15 page
// requests: p95 is the slowest) scaled the group out. Over 6 s, two
// page requests must pass 3.3 s for that. The health checks are as
// patient: a probe may take 1 s, and three in a row must fail (a 200 ms
// timeout failed the probes of a merely slow instance on a loaded
// machine, and shoal up began replacing it, which would end the sessions
// it holds).
func longPollApp(t *testing.T, stickyDir string) string {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`app: longpoll
run:
  command: node %s app
  env: {PING_INTERVAL_MS: "6000"}
  stop_timeout: 3s
health: {path: /healthz, interval: 1s, timeout: 1s, unhealthy_threshold: 3, grace: 20s}
group: {min: 1, desired: 1, max: 4, max_replacing: 2}
balancer:
  listen: 127.0.0.1:0
  drain_timeout: 2s
  sticky: {cookie: shoal_sticky, sockjs_prefixes: [/sockjs]}
admin: {listen: 127.0.0.1:0}
autoscale:
  interval: 500ms
  window: 6s
  warmup: 1s
  cooldown_out: 4s
  cooldown_in: 1s
  stabilization: 5s
  policies: [{name: p95, metric: latency_p95, target: 3s}]
`, shellQuote(filepath.Join(stickyDir, "server.js")))
	if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// adminMetric scrapes the admin /metrics of `shoal up` and returns the
// value of the series line that starts with name.
func adminMetric(ctx context.Context, adminURL, token, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", adminURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no series %s in /metrics", name)
}

// TestAutoscaleIgnoresLongPolls runs `shoal up` with a p95 latency policy
// and real long-polling clients (socket.io polling, SockJS xhr-polling)
// connected through its balancer beside a steady trickle of fast page
// requests. The polls are held open by the server for seconds; they must
// show as open held streams and leave the latency policy alone, so the
// desired count stays at 1. Before held exchanges were kept out of the
// latency histogram, the policy read a p95 of seconds and scaled out.
func TestAutoscaleIgnoresLongPolls(t *testing.T) {
	bin := testenv.BuildShoal(t)
	sdir := stickyDir(t)
	dir := longPollApp(t, sdir)
	up := startUp(t, bin, dir)
	c := up.client
	waitStatus(t, c, "1 in service", inService(1))
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))

	load := testenv.StartLoad(testenv.Context(t, 5*time.Minute), up.lbURL+"/", pacedLoad(5, 60*time.Second))
	defer load.Stop()

	ctx := testenv.Context(t, 90*time.Second)
	const perKind, holdMs = 3, 12000
	results := make(chan clientResult, 2*perKind)
	for i := range 2 * perKind {
		kind := "socketio"
		if i%2 == 1 {
			kind = "sockjs"
		}
		go func() {
			cmd := newPollingCmd(ctx, sdir, kind, up.lbURL, 3, holdMs)
			results <- runPollingCmd(cmd, kind)
		}()
	}

	// Until every client has held its session for holdMs, watch the
	// desired count, the policy and the open held streams.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var (
		maxDesired, maxHeld int
		sawData             bool
		change              *client.AutoscaleChange
		lastValue           float64
		pending             = 2 * perKind
	)
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if !r.OK {
				t.Errorf("long-polling client failed: %s", r.Error)
			}
			continue
		case <-ctx.Done():
			t.Fatalf("clients did not finish: %v", ctx.Err())
		case <-tick.C:
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		maxDesired = max(maxDesired, st.Desired)
		a, err := c.Autoscale(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range a.Policies {
			if p.Metric == "latency_p95" && p.OK {
				sawData, lastValue = true, p.Value
			}
		}
		if a.LastChange != nil && change == nil {
			change = a.LastChange
		}
		if v, err := adminMetric(ctx, up.adminURL, token, `shoal_lb_held_open{pool="longpoll"}`); err == nil {
			maxHeld = max(maxHeld, int(v))
		}
	}
	load.Stop()
	if maxDesired != 1 || change != nil {
		t.Errorf("desired rose to %d while long-polling clients were connected; want it to stay 1 (change: %+v)", maxDesired, change)
	}
	if !sawData {
		t.Errorf("the p95 policy never had data: the test did not exercise it")
	}
	if lastValue >= 3 {
		t.Errorf("p95 value %.3fs, want it below the 3s target", lastValue)
	}
	if maxHeld < 1 {
		t.Errorf("no open held stream was counted while %d clients long-polled", 2*perKind)
	}
	load.Check(t, "page requests")
	t.Logf("max desired %d, max open held streams %d, last p95 %.4fs", maxDesired, maxHeld, lastValue)
}
