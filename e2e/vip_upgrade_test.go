package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestVIPUpgrade upgrades the balancer of the node that holds the floating
// address, twice, under load through the address: each time a new shoal lb
// started beside the running one takes over its sockets (the listener
// handoff) and its keepalived (the guard), the old one drains and exits 0.
// No request fails, the address never leaves the node (keepalived is the
// same process throughout), and the last shoal lb, killed with SIGKILL,
// still takes keepalived down with it: the peer holds the address at once.
func TestVIPUpgrade(t *testing.T) {
	v := newVIPLab(t)
	active := v.single(20 * time.Second)
	n := v.nodes[active]
	kaPid := pidIn(t, filepath.Join(n.dir, ".shoal", "keepalived", "keepalived.pid"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := v.startLoad(ctx)
	samples := v.watchHolders(ctx)
	if err := load.WaitOK(testenv.Context(t, 10*time.Second), 50); err != nil {
		cancel()
		load.Stop()
		samples()
		t.Fatalf("load through the floating address: %v", err)
	}
	for round := 1; round <= 2; round++ {
		old := n.p
		cmd := v.lab.Command(n.host, v.bin, "lb", "-c", filepath.Join(n.dir, "lb.yaml"))
		cmd.Dir = n.dir
		p := testenv.StartCmd(t, cmd)
		wctx := testenv.Context(t, 60*time.Second)
		if _, err := p.WaitForLine(wctx, regexp.MustCompile(fmt.Sprintf(`msg="took over" old_pid=%d`, old.Cmd.Process.Pid))); err != nil {
			t.Fatalf("upgrade %d: the new shoal lb did not take over: %v\n%s", round, err, p.Output())
		}
		code, err := old.Wait(wctx)
		if err != nil || code != 0 {
			t.Fatalf("upgrade %d: the old shoal lb exited %d, %v; want 0\n%s", round, code, err, old.Output())
		}
		// "the balancer check asks": the guard now checks this process's
		// admin API (it says so to every owner once told).
		for _, want := range []string{"adopted the running keepalived", "took over", "the balancer check asks unix:" + filepath.Join(n.dir, ".shoal", "admin.sock")} {
			if !strings.Contains(p.Output(), want) {
				t.Errorf("upgrade %d: the new shoal lb did not log %q:\n%s", round, want, p.Output())
			}
		}
		if !strings.Contains(old.Output(), "keepalived left running for the shoal lb that took over") {
			t.Errorf("upgrade %d: the old shoal lb did not leave keepalived to the new one:\n%s", round, old.Output())
		}
		n.p = p
		// The new process serves through the address.
		if err := load.WaitOK(wctx, load.OK()+50); err != nil {
			t.Fatalf("upgrade %d: load after the takeover: %v", round, err)
		}
	}
	cancel()
	results := load.Stop()
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			if failed == 0 {
				t.Errorf("a request sent %v failed: %v", r.At.Format(time.StampMilli), r.Err)
			}
			failed++
		} else if r.Label != active {
			t.Errorf("a request was served by %s; the address must stay on %s", r.Label, active)
			break
		}
	}
	t.Logf("two upgrades of the holder %s under load: %d of %d requests failed", active, failed, len(results))
	if failed > 0 {
		t.Errorf("%d of %d requests failed; want none", failed, len(results))
	}
	for _, s := range samples() {
		if len(s.holders) != 1 || s.holders[0] != active {
			t.Errorf("at %v the address was on %v; want only %s throughout", s.at.Format(time.StampMilli), s.holders, active)
			break
		}
	}
	if got := pidIn(t, filepath.Join(n.dir, ".shoal", "keepalived", "keepalived.pid")); got != kaPid {
		t.Errorf("keepalived is pid %d after the upgrades, was %d: it was restarted", got, kaPid)
	}

	// The guard still ties keepalived to the balancer that now owns it.
	t0 := time.Now()
	if err := n.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v.moveTo(other(active), 5*time.Second)
	t.Logf("the upgraded shoal lb on %s killed: the address moved after %v", active, time.Since(t0).Round(time.Millisecond))
}
