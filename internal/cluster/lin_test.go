package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-dev/shoal/internal/api"
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

// linApps each hold two registers of the model: the group's desired
// count, and the set of env override names.
var linApps = []string{"web", "api"}

type linInput struct {
	app  string
	kind string // "desired" or "env"
	op   string // desired: "set", "incr", "read"; env: "add", "read"
	n    int    // set: the count
	name string // add: the variable
}

type linOutput struct {
	unknown bool   // a write whose outcome is unknown: maybe applied
	n       int    // incr: the new count; read of desired: the count
	names   string // read of env: the names, sorted, comma-joined
}

// linState is one register's state (a partition's): a count or a set of
// names.
type linState struct {
	n     int
	names string
}

func addName(names, name string) string {
	set := strings.Split(names, ",")
	if names == "" {
		set = nil
	}
	if !slices.Contains(set, name) {
		set = append(set, name)
		slices.Sort(set)
	}
	return strings.Join(set, ",")
}

// linModel is the sequential specification: a register per app and kind.
// A write of unknown outcome may have happened or not: porcupine keeps it
// pending to the end of the history, and its step accepts any output.
var linModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			in := op.Input.(linInput)
			k := in.app + "/" + in.kind
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(linState), input.(linInput), output.(linOutput)
		switch in.op {
		case "set":
			s.n = in.n
		case "incr":
			if !out.unknown && out.n != s.n+1 {
				return false, s
			}
			s.n++
		case "add":
			s.names = addName(s.names, in.name)
		case "read":
			if in.kind == "desired" {
				return out.n == s.n, s
			}
			return out.names == s.names, s
		}
		return true, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		arg := ""
		switch in.op {
		case "set":
			arg = strconv.Itoa(in.n)
		case "add":
			arg = in.name
		}
		res := "ok"
		switch {
		case out.unknown:
			res = "unknown"
		case in.op == "incr" || (in.op == "read" && in.kind == "desired"):
			res = strconv.Itoa(out.n)
		case in.op == "read":
			res = "[" + out.names + "]"
		}
		return fmt.Sprintf("%s %s.%s(%s) -> %s", in.app, in.kind, in.op, arg, res)
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		return fmt.Sprintf("n=%d names=[%s]", s.n, s.names)
	},
}

// linHistory records the clients' operations with their call and return
// times (nanoseconds since start; a write of unknown outcome returns at
// the end of time).
type linHistory struct {
	start    time.Time
	mu       sync.Mutex
	ops      []porcupine.Operation
	acked    []linInput // acknowledged env additions
	writes   atomic.Int64
	unknown  atomic.Int64
	progress chan struct{} // signalled after each acknowledged write
}

func (h *linHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *linHistory) record(client int, in linInput, call int64, out linOutput) {
	ret := h.now()
	if out.unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	if in.op == "add" && !out.unknown {
		h.acked = append(h.acked, in)
	}
	h.mu.Unlock()
	if in.op == "read" {
		return
	}
	if out.unknown {
		h.unknown.Add(1)
		return
	}
	h.writes.Add(1)
	select {
	case h.progress <- struct{}{}:
	default:
	}
}

// waitWrites waits until n more writes are acknowledged, for at most d;
// it reports whether they were.
func (h *linHistory) waitWrites(n int64, d time.Duration) bool {
	target := h.writes.Load() + n
	timer := time.NewTimer(d)
	defer timer.Stop()
	for h.writes.Load() < target {
		select {
		case <-h.progress:
		case <-timer.C:
			return false
		}
	}
	return true
}

// linClient issues random operations against random nodes until ctx
// ends, following a *NotLeaderError to the node it names.
type linClient struct {
	id  int
	l   *lab
	h   *linHistory
	rng *rand.Rand
	seq int
}

func (c *linClient) run(ctx context.Context) {
	for i := 0; i < 10000 && ctx.Err() == nil; i++ {
		c.do(ctx, c.next())
	}
}

func (c *linClient) next() linInput {
	in := linInput{app: linApps[c.rng.IntN(len(linApps))], kind: "desired"}
	switch r := c.rng.IntN(10); {
	case r < 2:
		in.op, in.n = "set", c.rng.IntN(1000)
	case r < 4:
		in.op = "incr"
	case r < 6:
		in.op = "read"
	case r < 8:
		c.seq++
		in.kind, in.op, in.name = "env", "add", fmt.Sprintf("V%d_%d", c.id, c.seq)
	default:
		in.kind, in.op = "env", "read"
	}
	return in
}

// do runs one operation and records it when it had an effect or an
// answer: an acknowledged write or a read (with its result), or a write
// of unknown outcome. A write refused for certain (not the leader, the
// node closed, the store's refusal) changed nothing and a read without an
// answer observed nothing: neither is recorded.
func (c *linClient) do(ctx context.Context, in linInput) {
	call := c.h.now()
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
			c.h.record(c.id, in, call, out)
			return
		case errors.As(err, &nl):
			if nl.Leader == "" || nl.Leader == id {
				c.awaitLeader(ctx)
				return
			}
			id = nl.Leader
		case in.op == "read":
			return
		case !errors.Is(err, ErrUnknownOutcome) && (errors.Is(err, store.ErrConflict) ||
			errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound)):
			return
		default:
			// ErrUnknownOutcome, or any error this test does not know
			// to be a refusal: maybe applied.
			c.h.record(c.id, in, call, linOutput{unknown: true})
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
func (c *linClient) exec(ctx context.Context, n *Node, st *store.Store, in linInput) (linOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	var out linOutput
	switch in.op {
	case "set":
		_, err := n.Apply(ctx, store.SetDesired{App: in.app, Desired: in.n})
		return out, err
	case "incr":
		g, err := n.UpdateGroup(ctx, in.app, func(g *api.Group) error { g.Desired++; return nil })
		out.n = g.Desired
		return out, err
	case "add":
		_, err := n.Apply(ctx, store.UpdateEnvOverrides{App: in.app, Set: []api.EnvVar{{Name: in.name, Value: "1"}}})
		return out, err
	}
	if err := n.Barrier(ctx); err != nil {
		return out, err
	}
	return linRead(st, in)
}

func linRead(st *store.Store, in linInput) (linOutput, error) {
	var out linOutput
	if in.kind == "desired" {
		g, ok, err := st.GetGroup(in.app)
		if err == nil && !ok {
			err = fmt.Errorf("group %s: %w", in.app, store.ErrNotFound)
		}
		out.n = g.Desired
		return out, err
	}
	env, err := st.EnvOverrides(in.app)
	var names []string
	for _, e := range env {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	out.names = strings.Join(names, ",")
	return out, err
}

// linView is what a member's store holds of the test's apps.
func linView(st *store.Store) (string, error) {
	var b strings.Builder
	for _, app := range linApps {
		desired, err := linRead(st, linInput{app: app, kind: "desired"})
		if err != nil {
			return "", err
		}
		env, err := linRead(st, linInput{app: app, kind: "env"})
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: desired %d, env [%s]\n", app, desired.n, env.names)
	}
	return b.String(), nil
}

func linSeed(t *testing.T) uint64 {
	if s := os.Getenv("SHOAL_LIN_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SHOAL_LIN_SEED=%q: %v", s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// TestLinearizable is issue 14's randomized test: scale and env writes
// and reads from several clients against a 3-node cluster while the
// leader is cut off (both ways) or crashes, and followers crash and start
// again from their data dirs. The history must be linearizable
// (porcupine), and every acknowledged write must be in the final state of
// every replica. SHOAL_LIN_SEED=n replays a run's choices (the timing
// differs).
func TestLinearizable(t *testing.T) {
	seed := linSeed(t)
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

	h := &linHistory{start: time.Now(), progress: make(chan struct{}, 1)}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range linClients {
		c := &linClient{id: i, l: l, h: h, rng: rand.New(rand.NewPCG(seed, uint64(i)+2))}
		wg.Go(func() { c.run(ctx) })
	}
	defer func() { stop(); wg.Wait() }()

	chaosEnd := time.Now().Add(linChaos)
	for step := 0; step < linSteps && time.Now().Before(chaosEnd); step++ {
		if !h.waitWrites(20, linStepWait) {
			t.Logf("step %d: the clients made no progress in %s", step, linStepWait)
		}
		t.Logf("step %d at %s: %d writes acknowledged, %d unknown", step, time.Since(h.start).Round(time.Millisecond), h.writes.Load(), h.unknown.Load())
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
			h.waitWrites(10, linStepWait)
			fab.heal()
		case 1:
			t.Logf("step %d: crash the leader %s", step, lead.id)
			l.stop(lead)
			h.waitWrites(10, linStepWait)
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
	h.waitWrites(20, linStepWait) // and after the last step
	stop()
	wg.Wait()
	t.Logf("chaos over at %s", time.Since(h.start).Round(time.Millisecond))

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
		for _, kind := range []string{"desired", "env"} {
			in := linInput{app: app, kind: kind, op: "read"}
			call := h.now()
			out, err := linRead(lead.st, in)
			if err != nil {
				t.Fatal(err)
			}
			h.record(linClients, in, call, out)
			for name := range strings.SplitSeq(out.names, ",") {
				present[app+"/"+name] = true
			}
		}
	}
	for _, in := range h.acked {
		if !present[in.app+"/"+in.name] {
			t.Errorf("the acknowledged env write %s of %s is lost; final state:\n%s", in.name, in.app, final)
		}
	}

	reads := 0
	for _, op := range h.ops {
		if op.Input.(linInput).op == "read" {
			reads++
		}
	}
	t.Logf("%d operations: %d acknowledged writes, %d of unknown outcome, %d reads; final state:\n%s",
		len(h.ops), h.writes.Load(), h.unknown.Load(), reads, final)
	if h.writes.Load() < 20 {
		t.Fatalf("only %d writes acknowledged: the history checks too little", h.writes.Load())
	}
	checked := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, h.ops, time.Minute)
	t.Logf("porcupine: %s in %s", res, time.Since(checked).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-lin-%d.html", seed))
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			t.Logf("visualize: %v", err)
		}
		t.Fatalf("history is %s (not shown linearizable); porcupine's visualization: %s", res, path)
	}
}
