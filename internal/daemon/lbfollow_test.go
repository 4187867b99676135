package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// testNode is a balancer node (`shoal lb` with a server section) run by a
// test in dir.
type testNode struct {
	d      *LB
	cancel context.CancelFunc
	done   chan error
}

// nodeFile is the lb.yaml of a balancer node of the server at fleetURL.
func nodeFile(t *testing.T, dir, fleetURL, name string) (string, *config.LBFile) {
	t.Helper()
	path := filepath.Join(dir, "lb.yaml")
	text := fmt.Sprintf(`listeners: [{name: http, listen: "127.0.0.1:0"}]
admin: {listen: "127.0.0.1:0"}
server: {url: %q, join_token_file: token, name: %s, data_dir: data}
`, fleetURL, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := config.LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, file
}

// writeToken writes a join token of role into dir/token.
func writeToken(t *testing.T, ts *testServer, dir string, role api.NodeRole) {
	t.Helper()
	tok, err := ts.client(t, "").JoinToken(testenv.Context(t, 10*time.Second), role, "10m")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startNode opens and runs the balancer node of dir until stop (or the
// test's end).
func startNode(t *testing.T, dir, fleetURL, name string) *testNode {
	t.Helper()
	path, file := nodeFile(t, dir, fleetURL, name)
	d, err := OpenLB(LBOptions{Path: path, File: file, Logger: testLogger(t).With("node", name), Context: testenv.Context(t, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{d: d, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- d.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// stop ends the node's Run and waits for it; safe to call twice.
func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		panic(fmt.Sprintf("balancer node run: %v", err))
	}
}

func (n *testNode) addr() string { return n.d.Addr("http").String() }

// targets returns the addresses of the pool's targets on b's side that are
// in state (any state: "").
func poolTargets(t *testing.T, get func(string) []poolTarget, name, state string) []string {
	t.Helper()
	var out []string
	for _, pt := range get(name) {
		if state == "" || pt.state == state {
			out = append(out, pt.addr)
		}
	}
	slices.Sort(out)
	return out
}

type poolTarget struct{ addr, state string }

func (n *testNode) pool(name string) []poolTarget {
	p, ok := n.d.b.Pool(name)
	if !ok {
		return nil
	}
	var out []poolTarget
	for _, ts := range p.Status().Targets {
		out = append(out, poolTarget{ts.Addr, ts.State})
	}
	return out
}

func (ts *testServer) pool(name string) []poolTarget {
	p, ok := ts.s.bal.Pool(name)
	if !ok {
		return nil
	}
	var out []poolTarget
	for _, st := range p.Status().Targets {
		out = append(out, poolTarget{st.Addr, st.State})
	}
	return out
}

// stickyApp is the shoal.yaml of a test app with cookie stickiness,
// desired instances, on host web.test.
func stickyApp(t *testing.T, desired int) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`app: web
run:
  command: %s
  env:
    %s: "1"
  stop_timeout: 2s
health: {path: /, interval: 200ms, timeout: 200ms, grace: 20s}
group: {min: 0, max: 4, desired: %d}
balancer:
  hosts: [web.test]
  drain_timeout: 1s
  sticky: {cookie: shoal_pin}
`, exe, agenttest.ServeEnv, desired)
}

// answer is what a test instance answers.
type answer struct {
	ID, Version string
	Cookie      *http.Cookie
}

// getWeb asks the balancer at addr for web.test, with cookie when set.
func getWeb(ctx context.Context, addr string, cookie *http.Cookie) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return answer{}, err
	}
	req.Host = "web.test"
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("GET web.test at %s: %d %s", addr, resp.StatusCode, b)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return answer{}, fmt.Errorf("GET web.test at %s: %q: %w", addr, b, err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "shoal_pin" {
			a.Cookie = c
		}
	}
	return a, nil
}

// waitReadyHosts waits until the server has the named hosts ready.
func waitReadyHosts(t *testing.T, ts *testServer, names ...string) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	testenv.Eventually(t, 30*time.Second, func() error {
		hosts, err := ts.client(t, "").Hosts(ctx)
		if err != nil {
			return err
		}
		var ready []string
		for _, h := range hosts {
			if h.State == api.HostReady {
				ready = append(ready, h.Name)
			}
		}
		if !slices.Equal(ready, names) {
			return fmt.Errorf("ready hosts %v, want %v", ready, names)
		}
		return nil
	})
}

// TestLBNodeFollowsServer runs `shoal server`, an agent and a balancer
// node joined with a token of role lb: the app's routes and targets reach
// the node; a request through the node reaches the app; a client pinned by
// the server's balancer stays pinned through the node (same sticky key);
// a scale changes the node's targets within a bound; the node keeps
// serving while the server is down, and after its own restart then (from
// its saved configuration); and once the server is back the node follows
// it again.
func TestLBNodeFollowsServer(t *testing.T) {
	dir, nodeDir := t.TempDir(), t.TempDir()
	agents := &agentSet{}
	t.Cleanup(agents.stop)
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	agents.startAgent(t, ts, "host-a")
	waitReadyHosts(t, ts, "host-a")
	ctx := testenv.Context(t, 3*time.Minute)

	writeToken(t, ts, nodeDir, api.RoleLB)
	node := startNode(t, nodeDir, ts.ready.FleetURL, "lb-1")
	web := ts.client(t, "web")
	if res, err := deployApp(t, ctx, web, stickyApp(t, 2), "web-1"); err != nil || !res.OK {
		t.Fatalf("deploy: %+v, %v", res, err)
	}

	// Routes and targets arrive; the node serves the app.
	testenv.Eventually(t, 30*time.Second, func() error {
		want := poolTargets(t, ts.pool, "web", "healthy")
		if got := poolTargets(t, node.pool, "web", "healthy"); len(want) != 2 || !slices.Equal(got, want) {
			return fmt.Errorf("node's healthy targets %v, server's %v", got, want)
		}
		_, err := getWeb(ctx, node.addr(), nil)
		return err
	})
	// The node checks the targets itself, with the app's health check.
	testenv.Eventually(t, 10*time.Second, func() error {
		cfg := node.d.b.Config()
		if len(cfg.Routes) != 1 || cfg.Routes[0].Host != "web.test" || len(cfg.Pools) != 1 || cfg.Pools[0].Health == nil ||
			cfg.Pools[0].Health.Interval != 200*time.Millisecond || cfg.Pools[0].Sticky.Cookie != "shoal_pin" {
			return fmt.Errorf("node's configuration: routes %+v, pools %+v", cfg.Routes, cfg.Pools)
		}
		return nil
	})

	// A client pinned through the server's balancer stays pinned through
	// the node: both sign with the app's key.
	first, err := getWeb(ctx, ts.s.Addr().String(), nil)
	if err != nil || first.Cookie == nil {
		t.Fatalf("first request through the server: %+v, %v; want a pin", first, err)
	}
	for i := range 8 {
		a, err := getWeb(ctx, node.addr(), first.Cookie)
		if err != nil || a.ID != first.ID {
			t.Fatalf("request %d through the node with the server's pin: %+v, %v; want instance %s", i, a, err, first.ID)
		}
	}
	// And the other way round.
	var other answer
	testenv.Eventually(t, 10*time.Second, func() error {
		a, err := getWeb(ctx, node.addr(), nil)
		if err != nil || a.ID == first.ID || a.Cookie == nil {
			return fmt.Errorf("a pin to the other instance from the node: %+v, %v", a, err)
		}
		other = a
		return nil
	})
	if a, err := getWeb(ctx, ts.s.Addr().String(), other.Cookie); err != nil || a.ID != other.ID {
		t.Fatalf("the node's pin through the server: %+v, %v; want instance %s", a, err, other.ID)
	}

	// A scale reaches the node within a bound once the server serves it.
	if _, err := web.Scale(ctx, 3); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := poolTargets(t, ts.pool, "web", "healthy"); len(got) != 3 {
			return fmt.Errorf("server's healthy targets %v", got)
		}
		return nil
	})
	testenv.Eventually(t, 3*time.Second, func() error {
		want := poolTargets(t, ts.pool, "web", "")
		if got := poolTargets(t, node.pool, "web", ""); !slices.Equal(got, want) {
			return fmt.Errorf("node's targets %v, server's %v", got, want)
		}
		return nil
	})
	_, version := node.d.follow.Following()
	if version == 0 {
		t.Fatal("the node follows no version")
	}

	// The server stops: the node keeps serving.
	fleetAddr := ts.s.FleetAddr().String()
	ts.stop()
	for i := range 5 {
		if _, err := getWeb(ctx, node.addr(), nil); err != nil {
			t.Fatalf("request %d through the node with the server down: %v", i, err)
		}
	}
	// The node restarts while the server is down: it serves its saved
	// configuration at once.
	node.stop()
	node = startNode(t, nodeDir, ts.ready.FleetURL, "lb-1")
	if a, err := getWeb(ctx, node.addr(), first.Cookie); err != nil || a.ID != first.ID {
		t.Fatalf("first request through the restarted node, server down: %+v, %v; want the pinned instance %s", a, err, first.ID)
	}
	if got := poolTargets(t, node.pool, "web", ""); len(got) != 3 {
		t.Fatalf("restarted node's targets %v, want the 3 saved", got)
	}

	// The server returns: the node follows it again (a new run: a
	// snapshot), then its changes.
	ts = startServer(t, serverConfig(t, dir, fleetAddr))
	web = ts.client(t, "web")
	testenv.Eventually(t, 60*time.Second, func() error {
		epoch, _ := node.d.follow.Following()
		if epoch != ts.s.lbs.epoch {
			return fmt.Errorf("node follows run %q, server's is %q", epoch, ts.s.lbs.epoch)
		}
		return nil
	})
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := web.Status(ctx)
		if err != nil || st.InService != 3 {
			return fmt.Errorf("after the server's restart: %d in service, %v", st.InService, err)
		}
		return nil
	})
	if _, err := web.Scale(ctx, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := poolTargets(t, node.pool, "web", ""); len(got) != 1 {
			return fmt.Errorf("node's targets after a scale to 1: %v", got)
		}
		_, err := getWeb(ctx, node.addr(), nil)
		return err
	})
}

// TestLBNodeRefused: a used token is refused at the join (nothing
// written), a node of role agent is refused the configuration (403 naming
// the role), and a caller without a client certificate gets 401.
func TestLBNodeRefused(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	ctx := testenv.Context(t, time.Minute)

	// A node that joined with an agent's token holds role agent.
	agentDir := t.TempDir()
	writeToken(t, ts, agentDir, api.RoleAgent)
	n := startNode(t, agentDir, ts.ready.FleetURL, "wrong-role")
	_, err := n.d.follow.poll(ctx, n.d.follow.servers.current(), "", 0)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "role agent may not call /v1/lb/config") {
		t.Fatalf("configuration for a node of role agent: %v; want 403 naming the role", err)
	}
	if epoch, v := n.d.follow.Following(); epoch != "" || v != 0 {
		t.Fatalf("a refused node follows %q %d", epoch, v)
	}

	// The same token again: refused, and no identity is written.
	usedDir := t.TempDir()
	tok, err := os.ReadFile(filepath.Join(agentDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(usedDir, "token"), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	path, file := nodeFile(t, usedDir, ts.ready.FleetURL, "second")
	d, err := OpenLB(LBOptions{Path: path, File: file, Context: ctx})
	var refused *pki.RefusedError
	if err == nil {
		d.Close()
	}
	if !errors.As(err, &refused) {
		t.Fatalf("join with a used token: %v; want a *pki.RefusedError", err)
	}
	if _, err := os.Stat(filepath.Join(usedDir, "data", "pki", "node.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused join left a certificate: %v", err)
	}

	// No client certificate: 401.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(ts.ready.FleetURL + "/v1/lb/config")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no client certificate: %d, want 401", resp.StatusCode)
	}
}

// TestLBNodeCertificatesAndChallenges: the certificates and challenges set
// on the server's balancer reach a node, which serves and answers them; a
// set that does not load is refused by the node, whose last good set
// keeps serving; a node restarted while the server is down serves the
// saved certificates.
func TestLBNodeCertificatesAndChallenges(t *testing.T) {
	dir, nodeDir := t.TempDir(), t.TempDir()
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	writeToken(t, ts, nodeDir, api.RoleLB)
	node := startNode(t, nodeDir, ts.ready.FleetURL, "lb-1")
	pair := func(name string) lb.ManagedCert {
		cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), name)
		c, _ := os.ReadFile(cf)
		k, _ := os.ReadFile(kf)
		return lb.ManagedCert{Names: []string{name}, CertPEM: c, KeyPEM: k}
	}
	good := pair("a.test")
	if err := ts.s.bal.SetCertificates([]lb.ManagedCert{good}); err != nil {
		t.Fatal(err)
	}
	ts.s.bal.SetChallenges(map[string]string{"tok": "tok.key"})
	testenv.Eventually(t, 10*time.Second, func() error {
		if c := node.d.b.Certificates(); len(c) != 1 || string(c[0].CertPEM) != string(good.CertPEM) {
			return fmt.Errorf("node's certificates: %d", len(c))
		}
		resp, err := http.Get("http://" + node.addr() + "/.well-known/acme-challenge/tok")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "tok.key" {
			return fmt.Errorf("challenge through the node: %d %q", resp.StatusCode, body)
		}
		return nil
	})
	// A certificate whose key is another's: the node refuses the page and
	// keeps serving the last good set. (lb refuses it on the server's
	// balancer too, so it is put straight into the stream.)
	bad := pair("b.test")
	bad.KeyPEM = good.KeyPEM
	ts.s.lbs.syncMu.Lock()
	cfg := ts.s.lbs.derive()
	cfg.Certificates = lbCertsOf([]lb.ManagedCert{good, bad})
	badAt := time.Now()
	ts.s.lbs.update(cfg)
	ts.s.lbs.syncMu.Unlock()
	// A node that refused a page asks for a snapshot (no epoch: after 0).
	testenv.Eventually(t, 10*time.Second, func() error {
		ts.s.lbs.mu.Lock()
		m := ts.s.lbs.nodes["lb-1"]
		ts.s.lbs.mu.Unlock()
		if m.at.Before(badAt) || m.after != 0 {
			return fmt.Errorf("the node's last call: after %d at %v; want a snapshot asked after the bad set", m.after, m.at)
		}
		return nil
	})
	if c := node.d.b.Certificates(); len(c) != 1 || string(c[0].CertPEM) != string(good.CertPEM) {
		t.Fatalf("after a bad set, the node serves %d certificates, want the last good one", len(c))
	}
	ts.s.lbs.syncMu.Lock()
	ts.s.lbs.update(ts.s.lbs.derive())
	ts.s.lbs.syncMu.Unlock()
	ts.s.bal.SetChallenges(nil)
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(node.d.b.Challenges()) != 0 {
			return errors.New("the challenge is still pending on the node")
		}
		return nil
	})
	ts.stop()
	node.stop()
	node = startNode(t, nodeDir, ts.ready.FleetURL, "lb-1")
	if c := node.d.b.Certificates(); len(c) != 1 || string(c[0].CertPEM) != string(good.CertPEM) {
		t.Fatalf("restarted with the server down, the node serves %d certificates", len(c))
	}
}
