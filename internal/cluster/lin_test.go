package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster/lincheck"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// The linearizability test (issue 14, "Tests"): clients write scale and
// env changes and read them back through whichever node they pick while
// the leader is cut off and nodes crash and start again from their data
// dirs; then porcupine checks the recorded history against a sequential
// model, and every acknowledged write must be in the final state.
const (
	linClients = 4
	// linChaos bounds the time in which chaos steps start; linSteps their
	// number. A step waits for the clients' progress, at most linStepWait.
	linChaos    = 5 * time.Second
	linSteps    = 6
	linStepWait = 10 * time.Second
	// linOpTimeout bounds each client call: a write on a cut-off leader
	// ends there with an unknown outcome.
	linOpTimeout = time.Second
)

// linApps each hold two registers of the model (lincheck): the group's
// desired count, and the set of env override names.
var linApps = []string{"web", "api"}

// linClient issues random operations against random nodes until ctx
// ends, following a *NotLeaderError to the node it names.
type linClient struct {
	id  int
	l   *lab
	h   *lincheck.History
	rng *rand.Rand
	seq int
}

func (c *linClient) run(ctx context.Context) {
	for i := 0; i < 10000 && ctx.Err() == nil; i++ {
		c.do(ctx, c.next())
	}
}

func (c *linClient) next() lincheck.Input {
	in := lincheck.Input{App: linApps[c.rng.IntN(len(linApps))], Kind: lincheck.Desired}
	switch r := c.rng.IntN(10); {
	case r < 2:
		in.Op, in.N = lincheck.Set, c.rng.IntN(1000)
	case r < 4:
		in.Op = lincheck.Incr
	case r < 6:
		in.Op = lincheck.Read
	case r < 8:
		c.seq++
		in.Kind, in.Op, in.Name = lincheck.Env, lincheck.Add, fmt.Sprintf("V%d_%d", c.id, c.seq)
	default:
		in.Kind, in.Op = lincheck.Env, lincheck.Read
	}
	return in
}

// do runs one operation and records it when it had an effect or an
// answer: an acknowledged write or a read (with its result), or a write
// of unknown outcome. A write refused for certain (not the leader, the
// node closed, the store's refusal) changed nothing and a read without an
// answer observed nothing: neither is recorded.
func (c *linClient) do(ctx context.Context, in lincheck.Input) {
	call := c.h.Now()
	ids := []string{"a", "b", "c"}
	id := ids[c.rng.IntN(len(ids))]
	for range 3 {
		m := c.l.nodes[id]
		m.mu.RLock()
		if m.n == nil {
			m.mu.RUnlock()
			c.awaitLeader(ctx) // stopped
			return
		}
		out, err := c.exec(ctx, m.n, m.st, in)
		m.mu.RUnlock()
		var nl *NotLeaderError
		switch {
		case err == nil:
			c.h.Record(c.id, in, call, out)
			return
		case errors.As(err, &nl):
			if nl.Leader == "" || nl.Leader == id {
				c.awaitLeader(ctx)
				return
			}
			id = nl.Leader
		case in.Op == lincheck.Read:
			return
		case !errors.Is(err, ErrUnknownOutcome) && (errors.Is(err, store.ErrConflict) ||
			errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound)):
			return
		default:
			// ErrUnknownOutcome, or any error this test does not know
			// to be a refusal: maybe applied.
			c.h.Record(c.id, in, call, lincheck.Output{Unknown: true})
			return
		}
	}
}

// awaitLeader waits (at most an op's timeout) until a running node
// leads, so that a client does not spin while the cluster has no leader.
func (c *linClient) awaitLeader(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	testenv.WaitFor(ctx, func() error {
		for _, m := range c.l.nodes {
			m.mu.RLock()
			leads := m.n != nil && m.n.IsLeader()
			m.mu.RUnlock()
			if leads {
				return nil
			}
		}
		return errors.New("no leader")
	})
}

// exec runs in on node n (its store st). A read first passes a Barrier on
// the leader: every write acknowledged before the read began is applied
// there, so the local read that follows is linearizable.
func (c *linClient) exec(ctx context.Context, n *Node, st *store.Store, in lincheck.Input) (lincheck.Output, error) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	var out lincheck.Output
	switch in.Op {
	case lincheck.Set:
		_, err := n.Apply(ctx, store.SetDesired{App: in.App, Desired: in.N})
		return out, err
	case lincheck.Incr:
		g, err := n.UpdateGroup(ctx, in.App, func(g *api.Group) error { g.Desired++; return nil })
		out.N = g.Desired
		return out, err
	case lincheck.Add:
		_, err := n.Apply(ctx, store.UpdateEnvOverrides{App: in.App, Set: []api.EnvVar{{Name: in.Name, Value: "1"}}})
		return out, err
	}
	if err := n.Barrier(ctx); err != nil {
		return out, err
	}
	return linRead(st, in)
}

func linRead(st *store.Store, in lincheck.Input) (lincheck.Output, error) {
	var out lincheck.Output
	if in.Kind == lincheck.Desired {
		g, ok, err := st.GetGroup(in.App)
		if err == nil && !ok {
			err = fmt.Errorf("group %s: %w", in.App, store.ErrNotFound)
		}
		out.N = g.Desired
		return out, err
	}
	env, err := st.EnvOverrides(in.App)
	var names []string
	for _, e := range env {
		names = append(names, e.Name)
	}
	out.Names = lincheck.JoinNames(names)
	return out, err
}

// linView is what a member's store holds of the test's apps.
func linView(st *store.Store) (string, error) {
	var b strings.Builder
	for _, app := range linApps {
		desired, err := linRead(st, lincheck.Input{App: app, Kind: lincheck.Desired})
		if err != nil {
			return "", err
		}
		env, err := linRead(st, lincheck.Input{App: app, Kind: lincheck.Env})
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: desired %d, env [%s]\n", app, desired.N, env.Names)
	}
	return b.String(), nil
}

// TestLinearizable is issue 14's randomized test: scale and env writes
// and reads from several clients against a 3-node cluster while the
// leader is cut off (both ways) or crashes, and followers crash and start
// again from their data dirs. The history must be linearizable
// (porcupine), and every acknowledged write must be in the final state of
// every replica. SHOAL_LIN_SEED=n replays a run's choices (the timing
// differs).
func TestLinearizable(t *testing.T) {
	seed, err := lincheck.Seed()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d (SHOAL_LIN_SEED=%d replays its choices)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	fab := newFabric()
	l := newLab(t, func(c *Config) {
		fab.tune(c)
		// Short timeouts, for several failovers in a few seconds.
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	})
	l.three()
	for _, app := range linApps {
		l.apply(store.PutGroup{Group: api.Group{App: app, Max: 1 << 20}})
	}

	h := lincheck.NewHistory()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range linClients {
		c := &linClient{id: i, l: l, h: h, rng: rand.New(rand.NewPCG(seed, uint64(i)+2))}
		wg.Go(func() { c.run(ctx) })
	}
	defer func() { stop(); wg.Wait() }()

	chaosEnd := time.Now().Add(linChaos)
	for step := 0; step < linSteps && time.Now().Before(chaosEnd); step++ {
		if !h.WaitWrites(20, linStepWait) {
			t.Logf("step %d: the clients made no progress in %s", step, linStepWait)
		}
		t.Logf("step %d at %s: %d writes acknowledged, %d unknown", step, h.Since().Round(time.Millisecond), h.Writes(), h.Unknown())
		lead := l.leaderNow()
		action := rng.IntN(3)
		if step == 0 {
			action = rng.IntN(2) // the first step always strikes the leader
		}
		if lead == nil && action < 2 {
			continue
		}
		switch action {
		case 0:
			t.Logf("step %d: cut the leader %s off", step, lead.id)
			fab.isolate(lead.id)
			h.WaitWrites(10, linStepWait)
			fab.heal()
		case 1:
			t.Logf("step %d: crash the leader %s", step, lead.id)
			l.stop(lead)
			h.WaitWrites(10, linStepWait)
			if err := l.open(lead, false); err != nil {
				t.Fatalf("start %s again: %v", lead.id, err)
			}
		case 2:
			m := l.nodes[[]string{"a", "b", "c"}[rng.IntN(3)]]
			t.Logf("step %d: restart %s", step, m.id)
			l.stop(m)
			if err := l.open(m, false); err != nil {
				t.Fatalf("start %s again: %v", m.id, err)
			}
		}
	}
	h.WaitWrites(20, linStepWait) // and after the last step
	stop()
	wg.Wait()
	t.Logf("chaos over at %s", h.Since().Round(time.Millisecond))

	// Every replica converges; the final state, read through the leader,
	// closes the history.
	lead := l.member(func(m *member) error { return m.n.Barrier(t.Context()) })
	var final string
	testenv.Eventually(t, 20*time.Second, func() error {
		var err error
		if final, err = linView(lead.st); err != nil {
			return err
		}
		for _, m := range l.running() {
			if got, err := linView(m.st); err != nil || got != final {
				return fmt.Errorf("%s holds (%v):\n%s\nthe leader %s:\n%s", m.id, err, got, lead.id, final)
			}
			if err := m.n.Err(); err != nil {
				t.Fatalf("%s stopped applying: %v", m.id, err)
			}
		}
		return nil
	})
	present := map[string]bool{} // app/name of every env override at the end
	for _, app := range linApps {
		for _, kind := range []string{lincheck.Desired, lincheck.Env} {
			in := lincheck.Input{App: app, Kind: kind, Op: lincheck.Read}
			call := h.Now()
			out, err := linRead(lead.st, in)
			if err != nil {
				t.Fatal(err)
			}
			h.Record(linClients, in, call, out)
			for name := range strings.SplitSeq(out.Names, ",") {
				present[app+"/"+name] = true
			}
		}
	}
	for _, in := range h.AckedAdds() {
		if !present[in.App+"/"+in.Name] {
			t.Errorf("the acknowledged env write %s of %s is lost; final state:\n%s", in.Name, in.App, final)
		}
	}

	t.Logf("%d operations: %d acknowledged writes, %d of unknown outcome, %d reads; final state:\n%s",
		h.Len(), h.Writes(), h.Unknown(), h.Reads(), final)
	if h.Writes() < 20 {
		t.Fatalf("only %d writes acknowledged: the history checks too little", h.Writes())
	}
	res, took, err := h.Check(seed, time.Minute)
	t.Logf("porcupine: %s in %s", res, took.Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
}
