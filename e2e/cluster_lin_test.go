package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/cluster/lincheck"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// The randomized linearizability test of issue 14, end to end: the
// model (lincheck) is the one of the package-level test
// (internal/cluster/lin_test.go); here the clients are the admin API's
// (package client, from the lab's client host) and the failures are
// real: `shoal server` processes SIGKILLed and started again from their
// data dirs, and cut off from the two others by nftables in their
// namespaces.
const (
	linLabClients = 4
	// linLabSteps bounds the chaos steps; linLabChaos the time in which
	// they start. A step waits for the clients' progress, at most
	// linLabStepWait each time.
	linLabSteps    = 6
	linLabChaos    = 4 * time.Minute
	linLabStepWait = time.Minute
	// linLabOpTimeout bounds a scale or a read; linLabEnvTimeout an env
	// write, which deploys a config-only release (a rollout over the
	// agents). A call cut by its bound has an unknown outcome.
	linLabOpTimeout  = 20 * time.Second
	linLabEnvTimeout = 2 * time.Minute
	// linLabMaxDesired bounds the scale writes (the app's max is 8).
	linLabMaxDesired = 6
)

// linLab is the randomized test's view of a clusterLab: the app, a
// client of each server's admin API that makes one attempt per call, the
// history, and one env write at a time.
type linLab struct {
	*clusterLab
	app     string
	clients map[string]*client.Client // by server id
	h       *lincheck.History
	// errs counts the failed calls by operation, outcome and error (its
	// numbers left out), for the log.
	errMu sync.Mutex
	errs  map[string]int
	// envMu lets one env write run at a time: each deploys a release,
	// and the test's own writes would otherwise refuse each other (a
	// deploy in progress) after the overrides were stored and before
	// they were put back (controller.SetEnv), which a read may see,
	// while the refusal says that nothing changed.
	envMu sync.Mutex
}

// oneAttempt makes the client's calls single attempts: a 503 loses its
// Retry-After, so package client does not send the call again and the
// test sees the 503. A 503 whose call may have been carried out says so
// (api.OutcomeHeader: a follower's forward that broke after the leader
// may have got the call, or a write the leader proposed before it lost
// the lead): it becomes a 502 here, whose outcome refused calls unknown.
type oneAttempt struct{ http.RoundTripper }

func (o oneAttempt) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.RoundTripper.RoundTrip(r)
	if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
		resp.Header.Del("Retry-After")
		if resp.Header.Get(api.OutcomeHeader) == api.OutcomeUnknown {
			resp.Header.Del(api.OutcomeHeader)
			resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway (the forward's outcome is unknown)"
		}
	}
	return resp, err
}

// oneAttemptClient is a client of s's admin API from the lab's client
// host, making one attempt per call. Its URL, token and CA pin stay the
// same across s's restarts.
func (l *linLab) oneAttemptClient(s *labServer) *client.Client {
	cl := l.adminClient(s.Server)
	cl.HTTP.Transport = oneAttempt{cl.HTTP.Transport}
	return cl
}

// refused reports whether a failed write certainly changed nothing:
// nothing answered at the address, the server refused it (400, 409), or
// it answered 503 (no leader known, the leader still starting, a forward
// that reached no leader, a write that reached a server no longer
// leading before it was proposed). A forward that broke after the leader may
// have got the call (502 here, see oneAttempt), another 5xx, a cut
// connection or the call's own deadline may come after the leader
// applied the write: its outcome is unknown. So is a deploy whose stream
// broke and that could not be followed to its end
// (*client.OutcomeUnknownError), whatever the error of the following
// was: an *UnreachableError or a 503 there says nothing of the write.
func refused(err error) bool {
	var unknown *client.OutcomeUnknownError
	var ue *client.UnreachableError
	var ae *client.APIError
	switch {
	case errors.As(err, &unknown):
		return false
	case errors.As(err, &ue):
		return true
	case !errors.As(err, &ae):
		return false
	}
	switch ae.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusServiceUnavailable:
		return true
	}
	return false
}

// linLabClient issues random operations against random servers until
// ctx ends.
type linLabClient struct {
	id  int
	l   *linLab
	rng *rand.Rand
	seq int
}

func (c *linLabClient) run(ctx context.Context) {
	for i := 0; i < 10000 && ctx.Err() == nil; i++ {
		c.do(ctx, c.next())
	}
}

// next chooses an operation: 30% scale, 15% env write, the rest reads.
func (c *linLabClient) next() lincheck.Input {
	in := lincheck.Input{App: c.l.app, Kind: lincheck.Desired, Op: lincheck.Read}
	switch r := c.rng.IntN(20); {
	case r < 6:
		in.Op, in.N = lincheck.Set, 1+c.rng.IntN(linLabMaxDesired)
	case r < 9:
		c.seq++
		in.Kind, in.Op, in.Name = lincheck.Env, lincheck.Add, fmt.Sprintf("LIN_%d_%d", c.id, c.seq)
	case r < 14:
		in.Kind = lincheck.Env
	}
	return in
}

// do runs in against a random server and records it unless it certainly
// had no effect (a refused write) or observed nothing (a failed read).
func (c *linLabClient) do(ctx context.Context, in lincheck.Input) {
	s := c.l.servers[c.rng.IntN(len(c.l.servers))]
	cl := c.l.clients[s.id]
	if in.Op == lincheck.Add {
		if !c.l.envMu.TryLock() {
			in = lincheck.Input{App: in.App, Kind: lincheck.Env, Op: lincheck.Read}
		} else {
			defer c.l.envMu.Unlock()
		}
	}
	timeout := linLabOpTimeout
	if in.Op == lincheck.Add {
		timeout = linLabEnvTimeout
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := c.l.h.Now()
	var out lincheck.Output
	var err error
	switch {
	case in.Op == lincheck.Set:
		_, err = cl.Scale(octx, in.N)
	case in.Op == lincheck.Add:
		var res *client.DeployResult
		res, err = cl.SetEnv(octx, []client.EnvVar{{Name: in.Name, Value: "1"}}, nil, nil)
		if err == nil && !res.OK {
			err = fmt.Errorf("the env deploy failed: %s", res.Error)
		}
	default:
		out, err = linLabRead(octx, cl, in.Kind)
	}
	if err == nil {
		c.l.h.Record(c.id, in, call, out)
		return
	}
	outcome := "unknown"
	switch {
	case in.Op == lincheck.Read:
		outcome = "no answer"
	case refused(err):
		outcome = "refused"
	default:
		c.l.h.Record(c.id, in, call, lincheck.Output{Unknown: true})
		if in.Op == lincheck.Add {
			// A failed `shoal env` puts the overrides back
			// (controller.SetEnv), also when its caller went away:
			// reads may have seen the name meanwhile.
			w := in
			w.Op = lincheck.Withdraw
			c.l.h.Record(c.id, w, call, lincheck.Output{Unknown: true})
		}
	}
	c.l.noteErr(in.Op, outcome, err)
	c.l.awaitLeader(ctx)
}

// linLabNumbers are the numbers of an error message (addresses,
// ports, counts), left out when errors are counted.
var linLabNumbers = regexp.MustCompile(`[0-9]+`)

// noteErr counts a failed call of op by outcome and the first words of
// its error.
func (l *linLab) noteErr(op, outcome string, err error) {
	msg := linLabNumbers.ReplaceAllString(err.Error(), "N")
	msg = msg[:min(len(msg), 120)]
	l.errMu.Lock()
	l.errs[op+" "+outcome+": "+msg]++
	l.errMu.Unlock()
}

// awaitLeader waits, at most a call's bound, until a server says it
// leads and serves its apps, so that a client does not spin on failures
// while the cluster elects a leader.
func (l *linLab) awaitLeader(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, linLabOpTimeout)
	defer cancel()
	testenv.WaitFor(ctx, func() error {
		for _, s := range l.servers {
			if st, err := l.clients[s.id].Self(ctx); err == nil && st.Role == "Leader" {
				_, err := l.clients[s.id].Apps(ctx)
				return err
			}
		}
		return errors.New("no leader")
	})
}

// linLabRead reads a register through the admin API: GET /v1/status's
// desired count, or the names GET /v1/env lists. Either is answered by
// the leader (a follower forwards it) from its controller.
func linLabRead(ctx context.Context, cl *client.Client, kind string) (lincheck.Output, error) {
	var out lincheck.Output
	if kind == lincheck.Desired {
		st, err := cl.Status(ctx)
		out.N = st.Desired
		return out, err
	}
	vs, err := cl.Env(ctx)
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	out.Names = lincheck.JoinNames(names)
	return out, err
}

// TestClusterLabLinearizable is issue 14's randomized test end to end:
// four clients scale the app, add env overrides (each a config-only
// deploy) and read both back through the admin API of random servers
// while the test SIGKILLs servers (the leader half of the time) and
// starts them again from their data dirs, or cuts them off from the two
// others with nftables and heals them (seeded: SHOAL_LIN_SEED=n replays
// the choices; the timing differs). Then porcupine checks the history
// against the register model, the final state read through the leader
// closing it, and each server's own store, read after it stopped, must
// hold that state: every acknowledged env write, the final count.
func TestClusterLabLinearizable(t *testing.T) {
	seed, err := lincheck.Seed()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d (SHOAL_LIN_SEED=%d replays its choices)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	l := &linLab{clusterLab: newClusterLab(t, "s2"), clients: map[string]*client.Client{}, errs: map[string]int{}, h: lincheck.NewHistory()}
	for _, s := range l.servers {
		l.clients[s.id] = l.oneAttemptClient(s)
	}
	st, err := l.servers[1].c.Status(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.app = st.App
	// The history starts from a known count (the model's registers
	// start at 0 and no env override).
	call := l.h.Now()
	if err := scaleTo(l.ctx, l.servers[1].c, 3); err != nil {
		t.Fatal(err)
	}
	l.h.Record(linLabClients, lincheck.Input{App: l.app, Kind: lincheck.Desired, Op: lincheck.Set, N: 3}, call, lincheck.Output{})

	ctx, stop := context.WithCancel(l.ctx)
	var wg sync.WaitGroup
	for i := range linLabClients {
		c := &linLabClient{id: i, l: l, rng: rand.New(rand.NewPCG(seed, uint64(i)+2))}
		wg.Go(func() { c.run(ctx) })
	}
	defer func() { stop(); wg.Wait() }()

	var kills, cuts int
	chaosEnd := time.Now().Add(linLabChaos)
	for step := 0; step < linLabSteps && time.Now().Before(chaosEnd); step++ {
		if !l.h.WaitWrites(5, linLabStepWait) {
			t.Logf("step %d: the clients made no progress in %s", step, linLabStepWait)
		}
		s := l.servers[rng.IntN(len(l.servers))]
		if rng.IntN(2) == 0 {
			lead, err := l.leader(l.ctx, l.servers...)
			if err != nil {
				t.Fatal(err)
			}
			s = lead
		}
		role := "follower"
		if s.is("Leader") == nil {
			role = "leader"
		}
		t.Logf("step %d at %s: %d writes acknowledged, %d unknown", step, l.h.Since().Round(time.Millisecond), l.h.Writes(), l.h.Unknown())
		if rng.IntN(2) == 0 {
			t.Logf("step %d: SIGKILL %s (%s)", step, s.id, role)
			l.kill(s)
			kills++
			l.h.WaitWrites(3, linLabStepWait)
			l.start(s)
		} else {
			t.Logf("step %d: cut %s (%s) off from the others", step, s.id, role)
			var ips []string
			for _, o := range l.others(s) {
				ips = append(ips, o.host.IP)
			}
			if err := l.lab.Partition(l.ctx, s.host.Name, ips...); err != nil {
				t.Fatal(err)
			}
			cuts++
			l.h.WaitWrites(3, linLabStepWait)
			if err := l.lab.Heal(l.ctx, s.host.Name); err != nil {
				t.Fatal(err)
			}
		}
		// Bounded: a server that does not catch up fails the test here.
		cctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
		err := l.caughtUp(cctx, s)
		cancel()
		if err != nil {
			t.Fatalf("step %d: %s after it came back: %v", step, s.id, err)
		}
	}
	l.h.WaitWrites(5, linLabStepWait) // and after the last step
	stop()
	wg.Wait()
	t.Logf("chaos over at %s: %d kills, %d partitions", l.h.Since().Round(time.Millisecond), kills, cuts)
	l.errMu.Lock()
	for e, n := range l.errs {
		t.Logf("failed calls: %d x %s", n, e)
	}
	l.errMu.Unlock()

	// Writes cut by the end of the test may still be under way on the
	// leader (an env write's rollout, then maybe its undo; a scale's
	// commit): once no rollout runs and every server caught up, the
	// state read through the leader is recorded, every server catches up
	// with it, and each stops. Then each server's own store is read.
	lead, err := l.leader(l.ctx, l.servers...)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(l.ctx, func() error {
		p, err := lead.c.Rollout(l.ctx)
		if err != nil {
			return err
		}
		if p != nil && !p.Phase.Terminal() {
			return fmt.Errorf("a rollout is %s", p.Phase)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l.allCaughtUp()
	for _, kind := range []string{lincheck.Desired, lincheck.Env} {
		in := lincheck.Input{App: l.app, Kind: kind, Op: lincheck.Read}
		call := l.h.Now()
		out, err := linLabRead(l.ctx, l.clients[lead.id], kind)
		if err != nil {
			t.Fatalf("the final read of %s through the leader %s: %v", kind, lead.id, err)
		}
		l.h.Record(linLabClients, in, call, out)
	}
	l.allCaughtUp()
	// The followers stop first, the leader last: it applied every write
	// it acknowledged and every one a read saw before answering, so its
	// store closes the history. A follower's store file may lag behind
	// what raft reported applied when it stopped (raft counts an entry
	// applied once handed to the state machine, and drops the queue at
	// shutdown; the store is rebuilt from the log at the next start), so
	// a difference there is logged, not failed; each must still hold
	// every acknowledged env write.
	order := append(l.others(lead), lead)
	var stores [][2]lincheck.Output // in order
	for _, s := range order {
		if err := s.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := s.Wait(l.ctx); err != nil || code != 0 {
			t.Fatalf("%s after SIGTERM: exit %d, %v", s.id, code, err)
		}
	}
	acked := l.h.AckedAdds()
	for _, s := range order {
		got, err := linLabStored(filepath.Join(s.dir, "data", "shoal.db"), l.app)
		if err != nil {
			t.Fatalf("%s's store: %v", s.id, err)
		}
		t.Logf("%s's store: desired %d, env [%s]", s.id, got[0].N, got[1].Names)
		present := map[string]bool{}
		for name := range strings.SplitSeq(got[1].Names, ",") {
			present[name] = true
		}
		for _, in := range acked {
			if !present[in.Name] {
				t.Errorf("the acknowledged env write %s is not in %s's store: env [%s]", in.Name, s.id, got[1].Names)
			}
		}
		stores = append(stores, got)
	}
	final := stores[len(stores)-1]
	for i, got := range stores[:len(stores)-1] {
		if got != final {
			t.Logf("%s's store differs from the leader %s's (see above)", order[i].id, lead.id)
		}
	}
	for i, kind := range []string{lincheck.Desired, lincheck.Env} {
		l.h.Record(linLabClients+1, lincheck.Input{App: l.app, Kind: kind, Op: lincheck.Read}, l.h.Now(), final[i])
	}
	t.Logf("%d operations: %d acknowledged writes, %d of unknown outcome, %d reads, %d kills, %d partitions; final state: desired %d, env [%s]",
		l.h.Len(), l.h.Writes(), l.h.Unknown(), l.h.Reads(), kills, cuts, final[0].N, final[1].Names)

	if l.h.Writes() < 20 {
		t.Fatalf("only %d writes acknowledged: the history checks too little", l.h.Writes())
	}
	res, took, err := l.h.Check(seed, 2*time.Minute)
	t.Logf("porcupine: %s in %s", res, took.Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
}

// kill SIGKILLs s and waits for it to exit.
func (l *linLab) kill(s *labServer) {
	l.t.Helper()
	if err := s.Signal(syscall.SIGKILL); err != nil {
		l.t.Fatal(err)
	}
	if _, err := s.Wait(l.ctx); err != nil {
		l.t.Fatalf("%s after SIGKILL: %v", s.id, err)
	}
}

// linLabStored reads the registers of app from the store file at path:
// its desired count, and its env override names.
func linLabStored(path, app string) ([2]lincheck.Output, error) {
	var out [2]lincheck.Output
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return out, err
	}
	defer st.Close()
	g, ok, err := st.GetGroup(app)
	if err != nil {
		return out, err
	}
	if !ok {
		return out, fmt.Errorf("no group of %s: %w", app, store.ErrNotFound)
	}
	vs, err := st.EnvOverrides(app)
	if err != nil {
		return out, err
	}
	names := make([]string, 0, len(vs))
	for _, v := range vs {
		names = append(names, v.Name)
	}
	out[0].N, out[1].Names = g.Desired, lincheck.JoinNames(names)
	return out, nil
}

// allCaughtUp waits until every server caught up with the leader.
func (l *linLab) allCaughtUp() {
	l.t.Helper()
	for _, s := range l.servers {
		if err := l.caughtUp(l.ctx, s); err != nil {
			l.t.Fatal(err)
		}
	}
}
