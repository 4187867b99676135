package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// plainWindow is how long TestVIPPlainKeepalived watches the load after a
// failure that plain keepalived does not notice (a dead balancer).
const plainWindow = 8 * time.Second

// TestVIPPlainKeepalived is the peer of TestVIPFailover, for
// docs/benchmarks.md (bench/vipfailover.sh runs both in one go test): the
// same lab hosts, balancers and load, but the floating address is kept by
// keepalived with plain settings, as its tutorials write it (VRRP version
// 2, advert_int 1, MASTER priority 101 and BACKUP 100, preempting, no
// track_script; unicast peers as on a cloud network), started by the test
// beside a `shoal lb` without a vip section. It measures the holder's
// balancer killed with SIGKILL (keepalived does not notice: the address
// stays and requests fail for the whole window) and the holder's link cut
// (the backup takes over after three adverts and its skew). Set
// SHOAL_VIP_PLAIN=1 to run it.
func TestVIPPlainKeepalived(t *testing.T) {
	if os.Getenv("SHOAL_VIP_PLAIN") == "" {
		t.Skip("a benchmark's peer: set SHOAL_VIP_PLAIN=1 (bench/vipfailover.sh)")
	}
	v := newVIPHosts(t)
	for _, h := range []string{"lb1", "lb2"} {
		n := &vipNode{host: h, dir: t.TempDir()}
		cfg := v.balancerYAML()
		if err := os.WriteFile(filepath.Join(n.dir, "lb.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		v.nodes[h] = n
		v.startPlain(n)
		state, prio := "MASTER", 101
		if h == "lb2" {
			state, prio = "BACKUP", 100
		}
		conf := fmt.Sprintf(`global_defs {
	vrrp_version 2
}
vrrp_instance plain {
	state %s
	interface eth0
	virtual_router_id 52
	priority %d
	advert_int 1
	unicast_peer {
		%s
	}
	virtual_ipaddress {
		%s/24 dev eth0
	}
}
`, state, prio, v.lab.Host(other(h)).IP, vipAddr)
		kdir := t.TempDir()
		path := filepath.Join(kdir, "keepalived.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ka := v.lab.Start(t, h, "/usr/sbin/keepalived", "-n", "-l", "-f", path,
			"-p", filepath.Join(kdir, "keepalived.pid"), "-r", filepath.Join(kdir, "vrrp.pid"))
		if _, err := ka.WaitForLine(testenv.Context(t, 20*time.Second), regexp.MustCompile(`Startup complete`)); err != nil {
			t.Fatalf("keepalived on %s: %v\n%s", h, err, ka.Output())
		}
	}
	active := v.single(20 * time.Second)
	t.Logf("first holder: %s", active)

	// The holder's balancer dies; keepalived holds the address on.
	ctx, cancel := context.WithCancel(context.Background())
	load := v.startLoad(ctx)
	if err := load.WaitOK(testenv.Context(t, 10*time.Second), 50); err != nil {
		cancel()
		load.Stop()
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := v.nodes[active].p.Signal(syscall.SIGKILL); err != nil {
		cancel()
		load.Stop()
		t.Fatal(err)
	}
	window := time.NewTimer(plainWindow)
	<-window.C
	cancel()
	took, failed, total, firstErr := failover(load.Stop(), t0, active)
	hs, _ := v.holders(context.Background())
	if took < 0 {
		t.Logf("plain keepalived: SIGKILL of shoal lb on %s: no failover in %v (the address stayed on %v); %d of %d requests failed (first: %v)",
			active, plainWindow, hs, failed, total, firstErr)
	} else {
		t.Logf("plain keepalived: SIGKILL of shoal lb on %s: the address answered from %s after %v; %d of %d requests failed (first: %v)",
			active, other(active), took.Round(time.Millisecond), failed, total, firstErr)
	}
	if _, err := v.nodes[active].p.Wait(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	v.startPlain(v.nodes[active])

	// The holder's link is cut.
	active = v.single(10 * time.Second)
	ctx, cancel = context.WithCancel(context.Background())
	load = v.startLoad(ctx)
	if err := load.WaitOK(testenv.Context(t, 10*time.Second), 50); err != nil {
		cancel()
		load.Stop()
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := v.lab.Cut(testenv.Context(t, 10*time.Second), active); err != nil {
		cancel()
		load.Stop()
		t.Fatal(err)
	}
	// Until the other node serves, then two seconds more.
	err := testenv.WaitFor(testenv.Context(t, 20*time.Second), func() error {
		if load.Labels()[other(active)] == 0 {
			return fmt.Errorf("no request served by %s yet", other(active))
		}
		return nil
	})
	if err == nil {
		more := time.NewTimer(2 * time.Second)
		<-more.C
	}
	cancel()
	took, failed, total, firstErr = failover(load.Stop(), t0, active)
	if err := v.lab.Restore(testenv.Context(t, 10*time.Second), active); err != nil {
		t.Fatal(err)
	}
	if took < 0 {
		t.Fatalf("plain keepalived: link cut of %s: no failover in 20s: %v", active, err)
	}
	t.Logf("plain keepalived: link cut of %s: the address answered from %s after %v; %d of %d requests failed (first: %v)",
		active, other(active), took.Round(time.Millisecond), failed, total, firstErr)
}

// startPlain (re)starts node n's shoal lb (no vip section) and waits
// until it listens.
func (v *vipLab) startPlain(n *vipNode) {
	v.t.Helper()
	cmd := v.lab.Command(n.host, v.bin, "lb", "-c", filepath.Join(n.dir, "lb.yaml"))
	cmd.Dir = n.dir
	n.p = testenv.StartCmd(v.t, cmd)
	if _, err := n.p.WaitForLine(testenv.Context(v.t, 20*time.Second), regexp.MustCompile(`msg=listening listener=web`)); err != nil {
		v.t.Fatalf("shoal lb on %s: %v\n%s", n.host, err, n.p.Output())
	}
}
