package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// fleetLab is a fleet in a lab (testenv.Lab): `shoal server` in the lab's
// own namespace (on the bridge's address, testenv.LabServerConfig), and
// `shoal agent` on hosts, each a network namespace with an address of its
// own. The CLI runs in the lab with SHOAL_ADMIN_URL and SHOAL_TOKEN set,
// as an operator's shell would.
type fleetLab struct {
	t   *testing.T
	bin string
	lab *testenv.Lab

	serverDir string // server.yaml and data/
	server    *testenv.Server

	agents map[string]*labAgent
}

// labAgent is one host's agent: its folder (agent.yaml, token, data/),
// zone and process.
type labAgent struct {
	host, zone, dir string
	p               *testenv.Process
}

// newFleetLab makes a lab with hosts and starts `shoal server` in it.
func newFleetLab(t *testing.T, hosts ...string) *fleetLab {
	t.Helper()
	bin := testenv.BuildShoal(t)
	f := &fleetLab{t: t, bin: bin, lab: testenv.NewLab(t, hosts...), serverDir: t.TempDir(), agents: map[string]*labAgent{}}
	if err := os.WriteFile(filepath.Join(f.serverDir, "server.yaml"), []byte(testenv.LabServerConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startServer()
	return f
}

// startServer starts `shoal server` and waits for its ready line.
func (f *fleetLab) startServer() {
	f.t.Helper()
	cmd := f.lab.Command("", f.bin, "server", "-c", filepath.Join(f.serverDir, "server.yaml"))
	cmd.Dir = f.serverDir
	s, err := testenv.StartServer(testenv.Context(f.t, time.Minute), cmd, filepath.Join(f.serverDir, "data"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		s.Close()
		if f.t.Failed() {
			f.t.Logf("output of shoal server:\n%s", s.Output())
		}
	})
	f.server = s
}

// shoal runs a client verb in the lab from dir ("" for the server's
// folder) and returns its exit code, stdout and stderr.
func (f *fleetLab) shoal(dir string, args ...string) (int, string, string) {
	f.t.Helper()
	if dir == "" {
		dir = f.serverDir
	}
	cmd := f.lab.CommandContext(testenv.Context(f.t, 3*time.Minute), "", f.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHOAL_ADMIN_URL="+f.server.AdminURL, "SHOAL_TOKEN="+f.server.Token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		f.t.Fatalf("shoal %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// joinToken makes a join token with `shoal join-token`.
func (f *fleetLab) joinToken() string {
	f.t.Helper()
	code, out, errOut := f.shoal("", "join-token")
	tok := strings.TrimSpace(out)
	if code != 0 || strings.Count(tok, "\n") != 0 || !strings.HasPrefix(tok, "shoal-join-") {
		f.t.Fatalf("shoal join-token: exit %d: %q %s", code, out, errOut)
	}
	return tok
}

// writeAgent writes host's agent.yaml (zone, listening on the host's
// address) and its token file into a new folder.
func (f *fleetLab) writeAgent(host, zone, token string) *labAgent {
	f.t.Helper()
	a := &labAgent{host: host, zone: zone, dir: f.t.TempDir()}
	cfg := testenv.LabAgentConfig(f.server.FleetURL, f.lab.Host(host), zone)
	if err := os.WriteFile(filepath.Join(a.dir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return a
}

// startAgent (re)starts the agent of a on its host.
func (f *fleetLab) startAgent(a *labAgent) {
	f.t.Helper()
	cmd := f.lab.Command(a.host, f.bin, "agent", "-c", filepath.Join(a.dir, "agent.yaml"))
	cmd.Dir = a.dir
	a.p = testenv.StartCmd(f.t, cmd)
	f.agents[a.host] = a
}

// hosts is `shoal hosts -o json`, by host name.
func (f *fleetLab) hosts() (map[string]api.HostStatus, error) {
	code, out, errOut := f.shoal("", "hosts", "-o", "json")
	if code != 0 {
		return nil, fmt.Errorf("shoal hosts: exit %d: %s", code, errOut)
	}
	var list []api.HostStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("shoal hosts -o json: %v: %q", err, out)
	}
	m := make(map[string]api.HostStatus, len(list))
	for _, h := range list {
		m[h.Name] = h
	}
	return m, nil
}

// status is `shoal status -o json` of the app in dir.
func (f *fleetLab) status(dir string) (api.Status, error) {
	var st api.Status
	code, out, errOut := f.shoal(dir, "status", "-o", "json")
	if code != 0 {
		return st, fmt.Errorf("shoal status: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("shoal status -o json: %v: %q", err, out)
	}
	return st, nil
}

// hostOf is the lab host whose address an instance listens on ("" when
// none).
func (f *fleetLab) hostOf(in api.InstanceStatus) string {
	ip, _, err := net.SplitHostPort(in.Addr)
	if err != nil {
		return ""
	}
	for _, h := range f.lab.Hosts() {
		if h.IP == ip {
			return h.Name
		}
	}
	return ""
}

// placed is one instance in service: its id, pid and host.
type placed struct {
	ID   string
	PID  int
	Host string
}

// serving returns the app's instances in service, sorted by id, once
// exactly want are in service and no other is live (pending, starting,
// unhealthy or draining); otherwise an error saying what is.
func (f *fleetLab) serving(dir string, want int) ([]placed, error) {
	st, err := f.status(dir)
	if err != nil {
		return nil, err
	}
	var out []placed
	var other []string
	for _, in := range st.Instances {
		switch in.State {
		case api.InService:
		case api.Stopped, api.Failed: // ended; the list may still show them
			continue
		default:
			other = append(other, fmt.Sprintf("%s %s", in.ID, in.State))
			continue
		}
		out = append(out, placed{ID: in.ID, PID: in.PID, Host: f.hostOf(in)})
	}
	if len(out) != want || len(other) > 0 {
		return nil, fmt.Errorf("%d in service (want %d), others: %v", len(out), want, other)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// servingAvoiding returns the app's instances in service, sorted by id,
// once want are in service on hosts other than avoid and none on avoid;
// instances of avoid in other states (draining, unhealthy) are not
// counted, nor are starting ones elsewhere.
func (f *fleetLab) servingAvoiding(dir string, want int, avoid string) ([]placed, error) {
	st, err := f.status(dir)
	if err != nil {
		return nil, err
	}
	var out []placed
	for _, in := range st.Instances {
		if in.State != api.InService {
			continue
		}
		p := placed{ID: in.ID, PID: in.PID, Host: f.hostOf(in)}
		if p.Host == avoid {
			return nil, fmt.Errorf("%s still serves from %s", in.ID, avoid)
		}
		out = append(out, p)
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d in service on other hosts than %s, want %d", len(out), avoid, want)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// agentClient calls host's agent as the server does: a certificate of
// role server from the fleet's CA, dialed from inside the lab.
func (f *fleetLab) agentClient(host string) *agentclient.Client {
	f.t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(f.serverDir, "data", "ca"))
	if err != nil {
		f.t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"shoal-lab-test"}, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	c := agentclient.New("https://"+net.JoinHostPort(f.lab.Host(host).IP, "7441"),
		&tls.Config{RootCAs: pool, ServerName: host, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	c.SetDialContext(f.lab.Dialer(""))
	f.t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// goApp copies examples/goapp for a fleet of hosts and tunes its
// shoal.yaml as an operator would for a fleet whose hosts may vanish:
//
//   - health: a check every 500ms (timeout 400ms) and 2 failures to leave
//     the pool, so a dead instance is out within about a second and a
//     half; healthy at the first pass, grace 20s (goapp boots at once);
//   - group: desired instances, max_replacing 3 so that the instances of
//     a lost host are replaced in one step;
//   - run: 0.25 CPU and 64MiB declared per instance, so placement
//     counts them against each host's capacity; stop_timeout 3s;
//   - balancer: drain_timeout 35s, longer than the balancer's try timeout
//     (30s): a GET in flight to a host that vanished gets no answer; it
//     is retried on another instance when its try times out, whereas a
//     shorter drain would cut it at the drain deadline with a 502. The
//     drain of a healthy instance ends as soon as its requests are done,
//     so deploys do not wait for it.
//
// admin.listen and balancer.listen are left out: the server has one admin
// API and one balancer for every app.
func goApp(t *testing.T, desired int) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := testenv.CopyApp(filepath.Join(root, "examples", "goapp"), dir); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "admin")
	doc["health"] = map[string]any{"path": "/healthz", "interval": "500ms", "timeout": "400ms",
		"healthy_threshold": 1, "unhealthy_threshold": 2, "grace": "20s"}
	doc["group"] = map[string]any{"min": 1, "desired": desired, "max": desired + 2, "max_replacing": 3}
	run := doc["run"].(map[string]any)
	run["cpu"], run["memory"], run["stop_timeout"] = 0.25, "64MiB", "3s"
	doc["balancer"] = map[string]any{"algorithm": "p2c", "drain_timeout": "35s"}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// labLoad is constant GET load on a URL through the lab's bridge from
// workers clients. Each request may take up to 45 seconds: longer than
// the balancer's try timeout (30s) and its retry on another instance, so
// a request that the balancer saves counts as saved, however slow.
func labLoad(ctx context.Context, l *testenv.Lab, url string, workers int) *testenv.Load {
	tr := l.Transport("")
	return testenv.StartLoad(ctx, url, testenv.LoadOptions{
		Workers: workers,
		Client:  func(int) *http.Client { return &http.Client{Transport: tr, Timeout: 45 * time.Second} },
	})
}
