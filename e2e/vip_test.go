package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// e2eChild is the test binary as a program on a lab host, by E2E_CHILD:
//
//   - echo: an HTTP server on E2E_ADDR answering every request with the
//     address of the connection's peer (for a balancer's request, the
//     balancer node's own address), so a client sees which node served.
func e2eChild(mode string) {
	switch mode {
	case "echo":
		ln, err := net.Listen("tcp", os.Getenv("E2E_ADDR"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("echo listening", ln.Addr())
		err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintln(w, host)
		}))
		fmt.Println(err)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "unknown E2E_CHILD %q\n", mode)
		os.Exit(2)
	}
}

// The floating address of the vip tests, on the lab's bridge network.
const (
	vipAddr = "10.77.0.100"
	vipPort = "8080"
)

// vipLab is two balancer nodes (lb1, lb2) sharing vipAddr with
// keepalived, a backend and a client host.
type vipLab struct {
	t     *testing.T
	bin   string
	lab   *testenv.Lab
	nodes map[string]*vipNode
}

type vipNode struct {
	host, dir string
	p         *testenv.Process
}

func newVIPLab(t *testing.T) *vipLab {
	t.Helper()
	v := newVIPHosts(t)
	v.startNodes(nil)
	return v
}

// newVIPHosts is newVIPLab's lab and backend, with no balancer node yet.
func newVIPHosts(t *testing.T) *vipLab {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/keepalived"); err != nil && os.Getenv("CI") == "" {
		t.Skip("the floating address test needs keepalived (apt-get install keepalived)")
	}
	v := &vipLab{t: t, bin: testenv.BuildShoal(t), nodes: map[string]*vipNode{}}
	v.lab = testenv.NewLab(t, "lb1", "lb2", "backend", "client")
	be := v.lab.Host("backend")
	cmd := v.lab.Command("backend", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "E2E_CHILD=echo", "E2E_ADDR="+be.IP+":8000")
	echo := testenv.StartCmd(t, cmd)
	if _, err := echo.WaitForLine(testenv.Context(t, 10*time.Second), regexp.MustCompile(`^echo listening`)); err != nil {
		t.Fatalf("echo backend: %v\n%s", err, echo.Output())
	}
	return v
}

// balancerYAML is every node's lb.yaml without its vip section: a
// listener on vipPort, every request to the backend, no retry.
func (v *vipLab) balancerYAML() string {
	return fmt.Sprintf(`listeners:
  - name: web
    listen: 0.0.0.0:%s
routes:
  - name: all
    pool: app
pools:
  - name: app
    retries: 0
    targets:
      - addr: %s:8000
`, vipPort, v.lab.Host("backend").IP)
}

// startNodes writes each node's lb.yaml, its vip section ended with
// vipExtra(node) when vipExtra is set, and starts the nodes.
func (v *vipLab) startNodes(vipExtra func(node string) string) {
	t := v.t
	t.Helper()
	for _, h := range []string{"lb1", "lb2"} {
		peer := "lb2"
		if h == "lb2" {
			peer = "lb1"
		}
		n := &vipNode{host: h, dir: t.TempDir()}
		cfg := v.balancerYAML() + fmt.Sprintf(`vip:
  address: %s/24
  interface: eth0
  peers: [%s]
`, vipAddr, v.lab.Host(peer).IP)
		if a := os.Getenv("VIP_ADVERT_INTERVAL"); a != "" {
			cfg += "  advert_interval: " + a + "\n"
		}
		if vipExtra != nil {
			cfg += vipExtra(h)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "lb.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		v.nodes[h] = n
		v.start(n)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range v.nodes {
				t.Logf("output of shoal lb on %s:\n%s", n.host, n.p.Output())
			}
		}
	})
}

// start (re)starts node n's shoal lb and waits until keepalived runs.
func (v *vipLab) start(n *vipNode) {
	v.t.Helper()
	cmd := v.lab.Command(n.host, v.bin, "lb", "-c", filepath.Join(n.dir, "lb.yaml"))
	cmd.Dir = n.dir
	n.p = testenv.StartCmd(v.t, cmd)
	if _, err := n.p.WaitForLine(testenv.Context(v.t, 20*time.Second), regexp.MustCompile(`keepalived started`)); err != nil {
		v.t.Fatalf("shoal lb on %s: %v\n%s", n.host, err, n.p.Output())
	}
}

// holders returns the nodes that have the floating address on eth0.
func (v *vipLab) holders(ctx context.Context) ([]string, error) {
	var out []string
	for _, h := range []string{"lb1", "lb2"} {
		b, err := v.lab.CommandContext(ctx, h, "ip", "-o", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ip addr on %s: %v: %s", h, err, b)
		}
		if strings.Contains(string(b), " "+vipAddr+"/") {
			out = append(out, h)
		}
	}
	return out, nil
}

// single waits until exactly one node holds the address and returns it.
func (v *vipLab) single(d time.Duration) string {
	v.t.Helper()
	var holder string
	testenv.Eventually(v.t, d, func() error {
		hs, err := v.holders(context.Background())
		if err != nil {
			return err
		}
		if len(hs) != 1 {
			return fmt.Errorf("nodes holding %s: %v, want one", vipAddr, hs)
		}
		holder = hs[0]
		return nil
	})
	return holder
}

// watchHolders samples the holders every 50ms until ctx ends and
// reports each sample's time and holders.
type holderSample struct {
	at      time.Time
	holders []string
}

func (v *vipLab) watchHolders(ctx context.Context) func() []holderSample {
	var (
		mu      sync.Mutex
		samples []holderSample
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			// A sample reads the nodes one after the other: it is dated
			// when it starts, so that one begun before a move is never
			// taken for a state after it.
			at := time.Now()
			hs, err := v.holders(ctx)
			if err == nil {
				mu.Lock()
				samples = append(samples, holderSample{at, hs})
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() []holderSample {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return samples
	}
}

// load sends requests to the floating address from the client host, a
// new connection each (so every request finds the address anew), from
// 4 workers each starting one every 20ms, each bounded by 1s, until ctx
// ends; stop returns every result, labelled with the node that served it.
func (v *vipLab) load(ctx context.Context) (stop func() []testenv.LoadResult) {
	return v.startLoad(ctx).Stop
}

// startLoad is load's Load, for a test that waits on its progress.
func (v *vipLab) startLoad(ctx context.Context) *testenv.Load {
	tr := v.lab.Transport("client")
	tr.DisableKeepAlives = true
	c := &http.Client{Transport: tr, Timeout: time.Second}
	byIP := map[string]string{v.lab.Host("lb1").IP: "lb1", v.lab.Host("lb2").IP: "lb2"}
	l := testenv.StartLoad(ctx, "http://"+vipAddr+":"+vipPort+"/", testenv.LoadOptions{
		Workers: 4,
		Every:   20 * time.Millisecond,
		Client:  func(int) *http.Client { return c },
		Keep:    true,
		Check: func(resp *http.Response, b []byte) (string, error) {
			switch node := byIP[strings.TrimSpace(string(b))]; {
			case resp.StatusCode != 200:
				return "", fmt.Errorf("status %d", resp.StatusCode)
			case node == "":
				return "", fmt.Errorf("answer %q from no node", b)
			default:
				return node, nil
			}
		},
	})
	return l
}

// failover summarises the load after a failure at t0 of node from: the
// time from t0 to the first request (started after t0) the other node
// served, and the requests started after t0 that failed.
func failover(results []testenv.LoadResult, t0 time.Time, from string) (took time.Duration, failed, total int, firstErr error) {
	took = -1
	for _, r := range results {
		if r.At.Before(t0) {
			continue
		}
		total++
		if r.Err != nil {
			failed++
			if firstErr == nil {
				firstErr = r.Err
			}
		}
		if r.Label != "" && r.Label != from && took < 0 {
			took = r.At.Sub(t0)
		}
	}
	return took, failed, total, firstErr
}

// TestVIPFailover runs two balancer nodes sharing a floating address
// with keepalived, under constant load from a client host: the active
// node's shoal lb is killed with SIGKILL, then the (new) active host's
// link is cut. Each time the address must answer from the other node
// within a bound, the failed requests are counted and reported, and once
// the failure is over the two nodes never both hold the address.
func TestVIPFailover(t *testing.T) {
	v := newVIPLab(t)
	active := v.single(20 * time.Second)
	t.Logf("first holder: %s", active)

	// bound is the failover time asserted: a host's loss is noticed after
	// three adverts (250ms) and a skew; the rest is slack for a loaded CI.
	const bound = 5 * time.Second

	phase := func(name string, fail func(node string) error, after func(node string)) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		stopLoad := v.load(ctx)
		samples := v.watchHolders(ctx)
		// Let the load run for a moment against the active node.
		testenv.Eventually(t, 10*time.Second, func() error {
			hs, err := v.holders(context.Background())
			if err != nil || len(hs) != 1 || hs[0] != active {
				return fmt.Errorf("holders %v (%v), want %s", hs, err, active)
			}
			return nil
		})
		from := active
		t0 := time.Now()
		if err := fail(from); err != nil {
			cancel()
			stopLoad()
			samples()
			t.Fatal(err)
		}
		other := "lb1"
		if from == "lb1" {
			other = "lb2"
		}
		// The other node takes the address and serves.
		testenv.Eventually(t, 2*bound, func() error {
			hs, err := v.holders(context.Background())
			if err != nil {
				return err
			}
			for _, h := range hs {
				if h == other {
					return nil
				}
			}
			return fmt.Errorf("holders %v, want %s among them", hs, other)
		})
		// Run on for two seconds after the other node holds it.
		deadline := time.Now().Add(2 * time.Second)
		testenv.Eventually(t, 10*time.Second, func() error {
			if time.Now().Before(deadline) {
				return fmt.Errorf("load runs on")
			}
			return nil
		})
		cancel()
		results := stopLoad()
		ss := samples()
		took, failed, total, firstErr := failover(results, t0, from)
		t.Logf("%s of %s: the address answered from %s after %v; %d of %d requests failed (first: %v)",
			name, from, other, took.Round(time.Millisecond), failed, total, firstErr)
		if took < 0 || took > bound {
			t.Errorf("%s: failover took %v, want at most %v", name, took, bound)
		}
		// Failures only in the failover window: none once the other node
		// served (plus the 1 s bound of a request started before).
		for _, r := range results {
			if r.Err != nil && r.At.After(t0.Add(took+time.Second)) && took >= 0 {
				t.Errorf("%s: a request started %v after the failure failed, after the failover (%v): %v", name, r.At.Sub(t0), took, r.Err)
				break
			}
		}
		after(from)
		// After the failure is over, exactly one node holds the address,
		// and never both in the samples from then on.
		active = v.single(2 * bound)
		if name == "link cut" {
			// The cut node kept the address meanwhile (a partition: it did
			// not hear the adverts); the samples before restore are not
			// checked.
			ss = nil
		}
		both := 0
		for _, s := range ss {
			if s.at.After(t0.Add(took)) && len(s.holders) > 1 {
				both++
			}
		}
		if both > 0 {
			t.Errorf("%s: in %d samples after the failover both nodes held the address", name, both)
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
		ss2 := v.watchHolders(ctx2)
		<-ctx2.Done()
		cancel2()
		for _, s := range ss2() {
			if len(s.holders) != 1 || s.holders[0] != active {
				t.Errorf("%s: after convergence the holders were %v, want only %s", name, s.holders, active)
				break
			}
		}
	}

	phase("SIGKILL of shoal lb", func(node string) error {
		return v.nodes[node].p.Signal(syscall.SIGKILL)
	}, func(node string) {
		if _, err := v.nodes[node].p.Wait(testenv.Context(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		v.start(v.nodes[node])
	})
	phase("link cut", func(node string) error {
		return v.lab.Cut(testenv.Context(t, 10*time.Second), node)
	}, func(node string) {
		if err := v.lab.Restore(testenv.Context(t, 10*time.Second), node); err != nil {
			t.Fatal(err)
		}
	})
}

// pidIn reads a pid file.
func pidIn(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// other is the node that is not n.
func other(n string) string {
	if n == "lb1" {
		return "lb2"
	}
	return "lb1"
}

// killKeepalived kills node n's keepalived (its parent and VRRP
// processes, by their pid files) with SIGKILL, as an OOM killer or a
// `systemctl kill -s KILL` would: the address stays on the interface.
func (v *vipLab) killKeepalived(n *vipNode) {
	v.t.Helper()
	dir := filepath.Join(n.dir, ".shoal", "keepalived")
	// Both stopped before either dies: the VRRP child gets SIGTERM when
	// its parent dies (keepalived sets it up so) and would remove the
	// address in its shutdown; a stopped process only dies of the SIGKILL.
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGKILL} {
		for _, f := range []string{"vrrp.pid", "keepalived.pid"} {
			if err := syscall.Kill(pidIn(v.t, filepath.Join(dir, f)), sig); err != nil {
				v.t.Fatalf("signal %v to keepalived (%s) on %s: %v", sig, f, n.host, err)
			}
		}
	}
}

// moveTo waits until exactly want holds the address.
func (v *vipLab) moveTo(want string, d time.Duration) {
	v.t.Helper()
	testenv.Eventually(v.t, d, func() error {
		hs, err := v.holders(context.Background())
		if err != nil {
			return err
		}
		if len(hs) != 1 || hs[0] != want {
			return fmt.Errorf("holders %v, want only %s", hs, want)
		}
		return nil
	})
}

// stays checks for d that exactly holder holds the address.
func (v *vipLab) stays(holder string, d time.Duration) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	samples := v.watchHolders(ctx)
	<-ctx.Done()
	cancel()
	for _, s := range samples() {
		if len(s.holders) != 1 || s.holders[0] != holder {
			v.t.Errorf("holders %v, want only %s", s.holders, holder)
			return
		}
	}
}

// TestVIPStaleAddress reproduces keepalived's known failure (killed with
// SIGKILL, it leaves the address on the interface, and two nodes answer
// for it) and checks Shoal's answers: the address is cleared at the next
// start of shoal lb; a keepalived killed alone under a running shoal lb
// is fenced (address removed) and started again; and a balancer that
// stops answering (SIGSTOP) loses the address through keepalived's check.
func TestVIPStaleAddress(t *testing.T) {
	v := newVIPLab(t)
	active := v.single(20 * time.Second)
	n := v.nodes[active]

	// shoal lb stopped first, so that neither it nor Pdeathsig reacts;
	// then keepalived and shoal lb killed.
	if err := n.p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	v.killKeepalived(n)
	if err := n.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := n.p.Wait(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		hs, err := v.holders(context.Background())
		if err != nil || len(hs) != 2 {
			return fmt.Errorf("holders %v (%v), want both: the killed node's stale address and its peer's", hs, err)
		}
		return nil
	})
	t0 := time.Now()
	v.start(n)
	if !strings.Contains(n.p.Output(), "removed a stale floating address") {
		t.Errorf("shoal lb on %s did not report the stale address it removed:\n%s", active, n.p.Output())
	}
	v.moveTo(other(active), 5*time.Second)
	t.Logf("stale address on %s cleared %v after shoal lb started again", active, time.Since(t0).Round(time.Millisecond))
	v.stays(other(active), 2*time.Second)

	// keepalived alone killed under a running shoal lb: shoal lb removes
	// the address at once and starts keepalived again.
	active = other(active)
	n = v.nodes[active]
	mark := n.p.Mark()
	v.killKeepalived(n)
	if _, _, err := n.p.WaitForLineFrom(testenv.Context(t, 20*time.Second), mark, regexp.MustCompile(`keepalived started`)); err != nil {
		t.Fatalf("keepalived not started again on %s: %v", active, err)
	}
	v.moveTo(other(active), 10*time.Second)
	v.stays(other(active), 2*time.Second)

	// A balancer that stops answering: keepalived's check (shoal lb
	// check) fails, the node goes to FAULT and the address moves.
	active = other(active)
	n = v.nodes[active]
	t0 = time.Now()
	if err := n.p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	v.moveTo(other(active), 15*time.Second)
	t.Logf("balancer on %s stopped (SIGSTOP): the address moved after %v", active, time.Since(t0).Round(time.Millisecond))
	if err := n.p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	v.stays(other(active), 3*time.Second)
}
