package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// clusterLab is a cluster of three `shoal server`s in a lab
// (testenv.Lab), each on a host of its own (s1, s2, s3), with three agents
// (h1, h2, h3), a balancer node (lb) and a client host (cli) that sends
// the GET load and runs the CLI. The agents and the node know one server
// URL (the one given to newClusterLab): a follower sends them on to the
// leader.
type clusterLab struct {
	t       *testing.T
	ctx     context.Context
	bin     string
	lab     *testenv.Lab
	servers []*labServer
	agents  []*testenv.Process
	node    *testenv.Process
	nodeURL string // the node's http listener, as the client reaches it
	app     string // the app's folder
}

// labServer is one `shoal server` of a clusterLab, on its own host; its
// Server is replaced when it restarts.
type labServer struct {
	id   string
	host *testenv.LabHost
	dir  string // server.yaml, data/
	*testenv.Server
	c *client.Client // its admin API, dialed from cli
}

// Addresses of a lab server's listeners (any port is free on a host).
const (
	labAdminPort = "7440"
	labFleetPort = "7443"
	labRaftPort  = "7450"
)

// raft is the server's raft address.
func (s *labServer) raft() string { return s.host.IP + ":" + labRaftPort }

// newClusterLab makes the lab, starts s1 (which forms the cluster) and
// adds s2 and s3, then starts the agents and the balancer node, which
// know only the server follow ("s1", "s2" or "s3"), and deploys v1 of the
// app (goapp, 3 instances) through it.
func newClusterLab(t *testing.T, follow string) *clusterLab {
	t.Helper()
	c := &clusterLab{t: t, ctx: testenv.Context(t, 14*time.Minute), bin: testenv.BuildShoal(t),
		lab: testenv.NewLab(t, "s1", "s2", "s3", "h1", "h2", "h3", "lb", "cli")}
	seed := t.TempDir()
	if _, err := pki.LoadOrCreateCA(filepath.Join(seed, "ca")); err != nil {
		t.Fatal(err)
	}
	if _, err := adminapi.LoadOrCreateToken(filepath.Join(seed, adminapi.TokenFile)); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"s1", "s2", "s3"} {
		s := &labServer{id: id, host: c.lab.Host(id), dir: t.TempDir()}
		data := filepath.Join(s.dir, "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		copyPrivateDir(t, filepath.Join(seed, "ca"), filepath.Join(data, "ca"))
		tok, err := os.ReadFile(filepath.Join(seed, adminapi.TokenFile))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(data, adminapi.TokenFile), string(tok))
		ip := s.host.IP
		writeFile(t, filepath.Join(s.dir, "server.yaml"), fmt.Sprintf(`data_dir: data
admin: {listen: "%[1]s:%[2]s"}
fleet: {listen: "%[1]s:%[3]s", url: "https://%[1]s:%[3]s", heartbeat: 200ms, lost_after: 3s}
balancer: {listen: "%[1]s:80", drain_timeout: 40s}
cluster: {id: %[4]s, listen: "%[1]s:%[5]s", bootstrap: %[6]t, election_timeout: 3s}
`, ip, labAdminPort, labFleetPort, id, labRaftPort, i == 0))
		c.servers = append(c.servers, s)
	}
	s1 := c.servers[0]
	c.start(s1)
	if _, err := c.leader(c.ctx, s1); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.servers[1:] {
		c.start(s)
		if _, err := s1.c.AddServer(c.ctx, s.id, s.raft()); err != nil {
			t.Fatalf("add %s at %s: %v", s.id, s.raft(), err)
		}
	}
	for _, s := range c.servers[1:] {
		if err := testenv.WaitFor(c.ctx, func() error { return s.is("Follower") }); err != nil {
			t.Fatalf("%s does not follow: %v", s.id, err)
		}
	}

	fs := c.server(follow)
	for _, name := range []string{"h1", "h2", "h3"} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "agent.yaml"), testenv.LabAgentConfig(fs.FleetURL, c.lab.Host(name), "z-"+name))
		writeFile(t, filepath.Join(dir, "token"), c.joinToken(api.RoleAgent)+"\n")
		cmd := c.lab.Command(name, c.bin, "agent", "-c", filepath.Join(dir, "agent.yaml"))
		cmd.Dir = dir
		p := testenv.StartCmd(t, cmd)
		c.agents = append(c.agents, p)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("output of agent %s:\n%s", name, p.Output())
			}
		})
	}
	if err := testenv.WaitFor(c.ctx, func() error {
		hosts, err := fs.c.Hosts(c.ctx)
		if err != nil {
			return err
		}
		ready := 0
		for _, h := range hosts {
			if h.Role == api.RoleAgent && h.State == api.HostReady {
				ready++
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 agents ready: %+v", ready, hosts)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	c.app = clusterLabApp(t)
	if out, err := c.shoal(fs, c.app, "deploy"); err != nil || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy through %s: %v\n%s", fs.id, err, out)
	}

	dir := t.TempDir()
	lbIP := c.lab.Host("lb").IP
	writeFile(t, filepath.Join(dir, "lb.yaml"), fmt.Sprintf("listeners: [{name: http, listen: %q}]\nserver: {url: %q, join_token_file: token, name: lb-1, data_dir: data}\n",
		lbIP+":80", fs.FleetURL))
	writeFile(t, filepath.Join(dir, "token"), c.joinToken(api.RoleLB)+"\n")
	cmd := c.lab.Command("lb", c.bin, "lb", "-c", filepath.Join(dir, "lb.yaml"))
	cmd.Dir = dir
	c.node = testenv.StartCmd(t, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of the balancer node:\n%s", c.node.Output())
		}
	})
	if _, err := c.node.WaitForLine(c.ctx, lbHTTPRe); err != nil {
		t.Fatalf("shoal lb: %v", err)
	}
	c.nodeURL = "http://" + lbIP + ":80/"
	get := &http.Client{Transport: c.lab.Transport("cli"), Timeout: 10 * time.Second}
	defer get.CloseIdleConnections()
	if err := testenv.WaitFor(c.ctx, func() error {
		resp, err := get.Get(c.nodeURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the node's answer: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// clusterLabApp is goapp tuned for the fleet (goApp, 3 instances) with
// room to scale up to 8 and rollouts one instance at a time (max_surge
// 1), so a deploy takes a step per instance.
func clusterLabApp(t *testing.T) string {
	t.Helper()
	dir := goApp(t, 3)
	editConfig(t, dir, func(doc map[string]any) {
		doc["group"].(map[string]any)["max"] = 8
		doc["deploy"] = map[string]any{"max_surge": "1"}
	})
	return dir
}

// start (re)starts s on its host and waits for its ready line.
func (c *clusterLab) start(s *labServer) {
	c.t.Helper()
	cmd := c.lab.Command(s.host.Name, c.bin, "server", "-c", filepath.Join(s.dir, "server.yaml"))
	cmd.Dir = s.dir
	srv, err := testenv.StartServer(c.ctx, cmd, filepath.Join(s.dir, "data"))
	if err != nil {
		c.t.Fatalf("%s: %v", s.id, err)
	}
	c.t.Cleanup(func() {
		srv.Close()
		if c.t.Failed() {
			c.t.Logf("output of shoal server %s (pid %d):\n%s", s.id, srv.Cmd.Process.Pid, srv.Output())
		}
	})
	s.Server, s.c = srv, c.adminClient(srv)
}

// adminClient is a client of srv's admin API dialed from cli, checking
// the CA pin.
func (c *clusterLab) adminClient(srv *testenv.Server) *client.Client {
	c.t.Helper()
	cl, err := client.NewWithOptions(srv.AdminURL, srv.Token, client.Options{CAPin: srv.CAPin})
	if err != nil {
		c.t.Fatal(err)
	}
	tr := cl.HTTP.Transport.(*http.Transport)
	tr.DialContext = c.lab.Dialer("cli")
	c.t.Cleanup(tr.CloseIdleConnections)
	return cl
}

// server returns the server named id.
func (c *clusterLab) server(id string) *labServer {
	for _, s := range c.servers {
		if s.id == id {
			return s
		}
	}
	panic("no server " + id)
}

// others returns the servers but s.
func (c *clusterLab) others(s *labServer) []*labServer {
	var out []*labServer
	for _, o := range c.servers {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

// leader waits until one of among says it leads the cluster with its
// apps started (its admin API serves the app's status), and returns it.
func (c *clusterLab) leader(ctx context.Context, among ...*labServer) (*labServer, error) {
	var l *labServer
	err := testenv.WaitFor(ctx, func() error {
		for _, s := range among {
			if s.is("Leader") == nil {
				if _, err := s.c.Apps(ctx); err != nil {
					return fmt.Errorf("%s leads, its admin API: %w", s.id, err)
				}
				l = s
				return nil
			}
		}
		return errors.New("no leader among them")
	})
	return l, err
}

// is is nil when s's raft role is role.
func (s *labServer) is(role string) error {
	st, err := s.self(context.Background())
	if err != nil {
		return err
	}
	if st.Role != role {
		return fmt.Errorf("%s is %s, not %s", s.id, st.Role, role)
	}
	return nil
}

// self is GET /v1/cluster/self of s (always answered by s itself),
// bounded by 3 seconds.
func (s *labServer) self(ctx context.Context) (api.ServerStatus, error) {
	var st api.ServerStatus
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL+"/v1/cluster/self", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := s.c.HTTP.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s: %s", s.id, resp.Status, body)
	}
	return st, json.Unmarshal(body, &st)
}

// joinToken makes a join token of role through the first server that
// answers (a follower forwards the call to the leader).
func (c *clusterLab) joinToken(role api.NodeRole) string {
	c.t.Helper()
	var tok string
	err := testenv.WaitFor(c.ctx, func() error {
		for _, s := range c.servers {
			if a, err := s.c.JoinToken(c.ctx, role, "30m"); err == nil {
				tok = a.Token
				return nil
			}
		}
		return errors.New("no server made a join token")
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// shoal runs a client verb on cli in dir against s's admin API, bounded
// by 4 minutes, and returns its combined output and error.
func (c *clusterLab) shoal(s *labServer, dir string, args ...string) (string, error) {
	cmd := c.shoalCmd(s, dir, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// shoalCmd is the command of a client verb on cli in dir against s's
// admin API (SHOAL_ADMIN_URL, SHOAL_TOKEN, SHOAL_CA_PIN), bounded by 4
// minutes.
func (c *clusterLab) shoalCmd(s *labServer, dir string, args ...string) *exec.Cmd {
	cmd := c.lab.CommandContext(testenv.Context(c.t, 4*time.Minute), "cli", c.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHOAL_ADMIN_URL="+s.AdminURL, "SHOAL_TOKEN="+s.Token, "SHOAL_CA_PIN="+s.CAPin)
	return cmd
}

// load starts GET load on the balancer node from cli: 4 workers, each
// with its own connections, a request every 5 ms each, 45 s allowed per
// request (longer than the balancer's try timeout and its retry).
func (c *clusterLab) load() *testenv.Load {
	l := testenv.StartLoad(c.ctx, c.nodeURL, testenv.LoadOptions{Workers: 4, Every: 5 * time.Millisecond,
		Client: func(int) *http.Client {
			return &http.Client{Transport: c.lab.Transport("cli"), Timeout: 45 * time.Second}
		}})
	c.t.Cleanup(func() { l.Stop() })
	l.RequireFlowing(c.t, "GETs through the balancer node", 50, time.Minute)
	return l
}

// Lines of an agent's log: an instance it started, and a mutating call of
// a leader that its term fence admitted.
var (
	agentStartedRe  = regexp.MustCompile(`msg="instance started" instance=(\S+) app=\S+ release=(\d+)`)
	agentAdmittedRe = regexp.MustCompile(`msg="leader action admitted" method=(\S+) path=(\S+) term=(\d+)`)
)

// agentMarks are the agents' output positions, for counting what they
// logged since.
func (c *clusterLab) agentMarks() []int {
	marks := make([]int, len(c.agents))
	for i, a := range c.agents {
		marks[i] = a.Mark()
	}
	return marks
}

// agentLines returns the submatches of re in the agents' output since
// marks (nil: since they started), agent by agent.
func (c *clusterLab) agentLines(marks []int, re *regexp.Regexp) [][]string {
	var out [][]string
	for i, a := range c.agents {
		lines := a.Lines()
		from := 0
		if marks != nil {
			from = marks[i]
		}
		for _, l := range lines[min(from, len(lines)):] {
			if m := re.FindStringSubmatch(l.Text); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// launchesByRelease counts the instances the agents started since marks,
// by release.
func (c *clusterLab) launchesByRelease(marks []int) map[int]int {
	n := map[int]int{}
	for _, m := range c.agentLines(marks, agentStartedRe) {
		r, _ := strconv.Atoi(m[2])
		n[r]++
	}
	return n
}

// serving waits until the app runs want instances in service, all of
// release rel, nothing else live and no rollout in progress, asking s.
func (c *clusterLab) serving(ctx context.Context, s *labServer, rel, want int) error {
	return testenv.WaitFor(ctx, func() error {
		st, err := s.c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Release != rel || st.Desired != want {
			return fmt.Errorf("release v%d, desired %d; want v%d, %d", st.Release, st.Desired, rel, want)
		}
		in := 0
		for _, i := range st.Instances {
			switch {
			case i.State == api.Stopped || i.State == api.Failed:
			case i.State == api.InService && i.Release == rel:
				in++
			default:
				return fmt.Errorf("instance %s of v%d is %s", i.ID, i.Release, i.State)
			}
		}
		if in != want {
			return fmt.Errorf("%d in service, want %d", in, want)
		}
		if p, err := s.c.Rollout(ctx); err != nil || p != nil && !p.Phase.Terminal() {
			return fmt.Errorf("rollout still in progress (%v)", err)
		}
		return nil
	})
}
