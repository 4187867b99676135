package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/daemon"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterFollowAnyServer: a cluster of three built with --join; an
// agent and a balancer node each configured with the three servers'
// fleet URLs, s1's (the leader's) first. s1 is killed with SIGKILL under
// load through the node: the node moves on to another server and follows
// the new leader, with no restart; a scale down right after the failover
// (the node may still be reconnecting: the new leader expects it) and a
// scale up after it reach the node and the agent (its new instances'
// artifacts come from the surviving servers); no GET through the node
// fails. `shoal events -f` through s2 and through s3, forwarded to s1
// until it dies, goes on past the failover: every event once, in order.
func TestClusterFollowAnyServer(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 3, 8)
	ctx := testenv.Context(t, 8*time.Minute)

	s1, s2, s3, _ := startJoinedCluster(t, ctx, bin)
	all := []*clusterServer{s1, s2, s3}
	urls := make([]string, len(all))
	for i, s := range all {
		urls[i] = s.FleetURL
	}
	list := "[" + strings.Join(urls, ", ") + "]"
	joinToken := func(role string) string {
		code, out := runShoalEnv(t, bin, t.TempDir(), clusterEnv(s1), "join-token", "--ttl", "10m", "--role", role)
		if code != 0 || !strings.HasPrefix(out, "shoal-join-v1.") {
			t.Fatalf("shoal join-token --role %s: exit %d\n%s", role, code, out)
		}
		return strings.TrimSpace(out)
	}
	agent := newServerAgent(t, list, "host-a", joinToken("agent"))
	agentp := agent.start(t, bin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of shoal agent:\n%s", agentp.Output())
		}
	})
	if code, out := runShoalFor(t, 4*time.Minute, bin, app, clusterEnv(s1), "deploy"); code != 0 || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: exit %d\n%s", code, out)
	}
	waitArtifacts(t, s2, s3)

	node, lbp, lbURL := startClusterNode(t, ctx, bin, list, joinToken("lb"))
	waitNodeTargets(t, filepath.Join(node, "data"), 3)
	load := testenv.StartLoad(ctx, lbURL, testenv.LoadOptions{Workers: 4, Every: 5 * time.Millisecond})
	defer load.Stop()
	load.RequireFlowing(t, "through the balancer node", 50, 20*time.Second)

	follows := followEvents(t, ctx, s2, s3)

	// Kill s1, the leader and the first URL of the agent and the node.
	nodeMark := lbp.Mark()
	killed := time.Now()
	if err := s1.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(ctx, t, s2, s3)
	t.Logf("leader killed -> %s leads after %s", leader.id, time.Since(killed))
	follower := s2
	if leader == s2 {
		follower = s3
	}
	// At once, through the follower: a scale down, acknowledged once the
	// new leader serves; its stop drains through the node, which may be
	// reconnecting still.
	cf := client.New(follower.AdminURL, follower.Token)
	if err := scaleTo(ctx, cf, 2); err != nil {
		t.Fatalf("scale 2 through %s after the failover: %v", follower.id, err)
	}
	if _, _, err := lbp.WaitForLineFrom(ctx, nodeMark, regexp.MustCompile(`following the server again" server=https://\S+`)); err != nil {
		t.Fatalf("the balancer node does not follow the new leader: %v", err)
	}
	waitInService(t, ctx, cf, 2)
	waitNodeTargets(t, filepath.Join(node, "data"), 2)

	// A scale up after the failover: the agent launches (artifacts from a
	// surviving server) and the node gets the new targets.
	if err := scaleTo(ctx, cf, 4); err != nil {
		t.Fatalf("scale 4 through %s after the failover: %v", follower.id, err)
	}
	waitInService(t, ctx, cf, 4)
	waitNodeTargets(t, filepath.Join(node, "data"), 4)
	t.Logf("leader killed -> scaled down and up through the node after %s", time.Since(killed))
	follows.caughtUp(t, ctx, cf)

	load.RequireFlowing(t, "through the balancer node after the failover", 50, 20*time.Second)
	load.Stop()
	load.RequireNoFailure(t, "through the balancer node while the leader was killed and the app scaled")
	t.Logf("GETs through the node: %d ok, %d failed", load.OK(), load.Failed())
}

// eventFollows are event follows (client.FollowEvents, what `shoal
// events -f` runs) through servers, from the first event.
type eventFollows struct {
	mu   sync.Mutex
	seqs map[string][]uint64 // server id -> the events' numbers, as received
	errs map[string]error    // server id -> what its follow returned
}

// followEvents starts a follow through each of servers, stopped and
// waited for when the test ends, and waits until each has received an
// event.
func followEvents(t *testing.T, ctx context.Context, servers ...*clusterServer) *eventFollows {
	t.Helper()
	f := &eventFollows{seqs: map[string][]uint64{}, errs: map[string]error{}}
	fctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	for _, s := range servers {
		c := client.New(s.AdminURL, s.Token)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.FollowEvents(fctx, 0, func(e client.Event) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.seqs[s.id] = append(f.seqs[s.id], e.Seq)
				return nil
			})
			f.mu.Lock()
			defer f.mu.Unlock()
			f.errs[s.id] = fmt.Errorf("the follow through %s ended: %v", s.id, err)
		}()
	}
	testenv.Eventually(t, time.Minute, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, s := range servers {
			if len(f.seqs[s.id]) == 0 {
				return fmt.Errorf("no event through %s yet", s.id)
			}
		}
		return nil
	})
	return f
}

// caughtUp waits until every follow has received the last event c
// lists, each once and in order, none of them having ended.
func (f *eventFollows) caughtUp(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	var last uint64
	for range 1000 {
		evs, err := c.Events(ctx, last, 500)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if len(evs) == 0 {
			break
		}
		last = evs[len(evs)-1].Seq
	}
	testenv.Eventually(t, time.Minute, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for id, seqs := range f.seqs {
			if err := f.errs[id]; err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] <= seqs[i-1] {
					t.Fatalf("the follow through %s received event %d after %d", id, seqs[i], seqs[i-1])
				}
			}
			if n := len(seqs); seqs[n-1] < last {
				return fmt.Errorf("the follow through %s is at event %d, the cluster at %d", id, seqs[n-1], last)
			}
		}
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("event follows through %d servers went on past the failover, to event %d", len(f.seqs), last)
}

// waitInService waits until the app of c's cluster has n instances in
// service and desires n.
func waitInService(t *testing.T, ctx context.Context, c *client.Client, n int) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		in := 0
		for _, i := range st.Instances {
			if i.State == api.InService {
				in++
			}
		}
		if st.Desired != n || in != n {
			return fmt.Errorf("desired %d, %d in service; want %d", st.Desired, in, n)
		}
		return nil
	})
}

// waitNodeTargets waits until the balancer node whose data_dir is data
// has applied (and saved, daemon.LBStateFile) a configuration whose one
// pool has n targets, all in service.
func waitNodeTargets(t *testing.T, data string, n int) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		b, err := os.ReadFile(filepath.Join(data, daemon.LBStateFile))
		if err != nil {
			return err
		}
		var st struct {
			Config api.LBConfig `json:"config"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		if len(st.Config.Pools) != 1 {
			return fmt.Errorf("%d pools on the node", len(st.Config.Pools))
		}
		in := 0
		for _, tg := range st.Config.Pools[0].Targets {
			if tg.State != api.LBInService {
				return fmt.Errorf("target %s is %s on the node", tg.Addr, tg.State)
			}
			in++
		}
		if in != n {
			return fmt.Errorf("%d targets on the node, want %d", in, n)
		}
		return nil
	})
}

// waitArtifacts waits until every server of servers holds an artifact
// (followers fetch each release's from the leader).
func waitArtifacts(t *testing.T, servers ...*clusterServer) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, s := range servers {
			ents, err := os.ReadDir(filepath.Join(s.dir, "data", "artifacts", "artifacts"))
			if err != nil || len(ents) == 0 {
				return fmt.Errorf("%s holds no artifact yet (%v)", s.id, err)
			}
		}
		return nil
	})
}

// startClusterNode starts a balancer node lb-1 on 127.0.0.1 following
// url (lb.yaml's server.url as written: one URL or a YAML list), joining
// with token, and returns its directory (its data in dir/data), its
// process and its URL once the app answers 200 through it.
func startClusterNode(t *testing.T, ctx context.Context, bin, url, token string) (dir string, lbp *testenv.Process, lbURL string) {
	t.Helper()
	dir = t.TempDir()
	lbCfg := filepath.Join(dir, "lb.yaml")
	lbYAML := fmt.Sprintf("listeners: [{name: http, listen: \"127.0.0.1:0\"}]\nserver: {url: %s, join_token_file: token, name: lb-1, data_dir: data}\n", url)
	if err := os.WriteFile(lbCfg, []byte(lbYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lbp = testenv.Start(t, bin, "lb", "-c", lbCfg)
	m, err := lbp.WaitForLine(ctx, lbHTTPRe)
	if err != nil {
		t.Fatalf("shoal lb: %v\n%s", err, lbp.Output())
	}
	lbURL = "http://" + m[1] + "/"
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of shoal lb:\n%s", lbp.Output())
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(lbURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the node's answer: %s", resp.Status)
		}
		return nil
	})
	return dir, lbp, lbURL
}
