package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestMain(m *testing.M) {
	// A goroutine of Node.answer stays blocked on a future that raft
	// never answers when it shuts down with the future's entry queued for
	// the state machine (hashicorp/raft#498); Close does not wait for it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*deferError).Error"))
}

// lab is an in-process cluster: every node a real raft over TLS on
// 127.0.0.1, with its own data dir and store.
type lab struct {
	t        testing.TB
	ca       *pki.CA
	srv, cli *tls.Config
	nodes    map[string]*member
	log      *testWriter
	tune     func(*Config)
	unknown  int // writes retried after an unknown outcome
}

// member is one server of a lab. The lab's helpers read n and st
// without a lock from the test's goroutine; code that uses members from
// other goroutines while they are stopped and started (lin_test.go) reads
// them, and uses st, under mu (stop takes it to close the store).
type member struct {
	id, dir, addr string

	mu sync.RWMutex
	st *store.Store
	n  *Node // nil while stopped
}

func newLab(t testing.TB, tune func(*Config)) *lab {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.ServerTLSConfig(ca, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := pki.ServerClientTLSConfig(ca)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, ca: ca, srv: srv, cli: cli, nodes: map[string]*member{}, log: &testWriter{t: t}, tune: tune}
	t.Cleanup(func() {
		for _, m := range l.nodes {
			l.stop(m)
		}
		l.log.close()
	})
	return l
}

// start starts member id (new, or again from its data dir on the same
// address); the first one started with bootstrap forms the cluster.
func (l *lab) start(id string, bootstrap bool) *member {
	l.t.Helper()
	m := l.nodes[id]
	if m == nil {
		m = &member{id: id, dir: filepath.Join(l.t.TempDir(), id), addr: "127.0.0.1:0"}
		l.nodes[id] = m
	}
	if err := l.open(m, bootstrap); err != nil {
		l.t.Fatal(err)
	}
	return m
}

// open starts the stopped member m; safe from any goroutine once m
// exists.
func (l *lab) open(m *member, bootstrap bool) error {
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(m.dir, "shoal.db"), store.Options{})
	if err != nil {
		ln.Close()
		return err
	}
	id := m.id
	cfg := Config{
		ID: id, Advertise: ln.Addr().String(), Listener: ln, DataDir: m.dir, Store: st,
		ServerTLS: l.srv, ClientTLS: l.cli, Bootstrap: bootstrap,
		// raft's default timeouts (1 s): what a server runs with, and
		// steady on a loaded machine under -race.
		Logger: slog.New(slog.NewTextHandler(l.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if l.tune != nil {
		l.tune(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		st.Close()
		return err
	}
	m.mu.Lock()
	m.addr, m.st, m.n = ln.Addr().String(), st, n
	m.mu.Unlock()
	return nil
}

// stop stops m as a crash would leave its files (Close releases what the
// process held; nothing is flushed that a commit had not).
func (l *lab) stop(m *member) {
	if err := l.halt(m); err != nil {
		l.t.Error(err)
	}
}

// halt stops m; safe from any goroutine, while others use m under m.mu:
// the node is closed first, so that their calls on it end, then the
// store, once they released m.mu.
func (l *lab) halt(m *member) error {
	m.mu.RLock()
	n := m.n
	m.mu.RUnlock()
	if n == nil {
		return nil
	}
	err := n.Close()
	if err != nil {
		err = fmt.Errorf("close %s: %w", m.id, err)
	}
	m.mu.Lock()
	st := m.st
	m.n, m.st = nil, nil
	m.mu.Unlock()
	if cerr := st.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close store of %s: %w", m.id, cerr))
	}
	return err
}

// three starts a cluster of a, b and c, with a bootstrapping and adding
// the others.
func (l *lab) three() {
	l.t.Helper()
	a := l.start("a", true)
	l.start("b", false)
	l.start("c", false)
	testenv.Eventually(l.t, 10*time.Second, func() error {
		if !a.n.IsLeader() {
			return errors.New("a does not lead")
		}
		return nil
	})
	for _, id := range []string{"b", "c"} {
		l.member(func(lead *member) error { return lead.n.AddVoter(l.t.Context(), id, l.nodes[id].addr) })
	}
	l.eventuallyEqual()
	// AddVoter returns once a majority has the new configuration; a
	// member that lacks it would refuse the votes of the one added (not
	// in its configuration), and with the leader then stopped no leader
	// could be elected.
	testenv.Eventually(l.t, 20*time.Second, func() error {
		for _, m := range l.running() {
			servers, err := m.n.Servers(l.t.Context())
			if err != nil {
				return err
			}
			if len(servers) != 3 {
				return fmt.Errorf("%s knows %d servers, want 3", m.id, len(servers))
			}
		}
		return nil
	})
}

func (l *lab) running() []*member {
	var out []*member
	for _, id := range slices.Sorted(maps.Keys(l.nodes)) {
		if m := l.nodes[id]; m.n != nil {
			out = append(out, m)
		}
	}
	return out
}

// leader waits for one running member to lead and the others to know it.
func (l *lab) leader(d time.Duration) *member {
	l.t.Helper()
	var lead *member
	testenv.Eventually(l.t, d, func() error {
		lead = nil
		for _, m := range l.running() {
			if m.n.IsLeader() {
				lead = m
			}
		}
		if lead == nil {
			return errors.New("no leader")
		}
		for _, m := range l.running() {
			if id, _ := m.n.Leader(); id != lead.id {
				return fmt.Errorf("%s knows leader %q, want %s", m.id, id, lead.id)
			}
		}
		return nil
	})
	return lead
}

// member calls fn on the leader until it succeeds, finding the leader
// again while leadership moves (a loaded machine may see an election).
func (l *lab) member(fn func(lead *member) error) *member {
	l.t.Helper()
	var lead *member
	testenv.Eventually(l.t, 20*time.Second, func() error {
		if lead = l.leaderNow(); lead == nil {
			return errors.New("no leader")
		}
		return fn(lead)
	})
	return lead
}

// apply applies c on whichever member leads, retrying while leadership
// moves; it fails the test on any other error.
func (l *lab) apply(c store.Command) any {
	l.t.Helper()
	var res any
	testenv.Eventually(l.t, 20*time.Second, func() error {
		for _, m := range l.running() {
			ctx, cancel := context.WithTimeout(l.t.Context(), 5*time.Second)
			r, err := m.n.Apply(ctx, c)
			cancel()
			if errors.Is(err, ErrNotLeader) {
				continue // refused: not applied
			}
			if errors.Is(err, ErrUnknownOutcome) {
				// Maybe applied: the retry may apply it twice, so the
				// tests allow one more of it.
				l.unknown++
				l.t.Logf("%s: %v; retrying", c.Op(), err)
				return err
			}
			if err != nil {
				return err
			}
			res = r
			return nil
		}
		return errors.New("no leader took the write")
	})
	return res
}

// view is what a member's store holds of the test app, as text.
func view(st *store.Store) (string, error) {
	g, ok, err := st.GetGroup("web")
	if err != nil {
		return "", err
	}
	rels, err := st.Releases("web")
	if err != nil {
		return "", err
	}
	evs, err := st.Events("web", 0, 0)
	if err != nil {
		return "", err
	}
	env, err := st.EnvOverrides("web")
	if err != nil {
		return "", err
	}
	hosts, err := st.Hosts().List()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("group %v %+v\nreleases %+v\nevents %+v\nenv %+v\nhosts %+v", ok, g, rels, evs, env, hosts), nil
}

// eventuallyEqual waits until every running member's store holds what the
// leader's does.
func (l *lab) eventuallyEqual() string {
	l.t.Helper()
	var want string
	testenv.Eventually(l.t, 20*time.Second, func() error {
		lead := l.leaderNow()
		if lead == nil {
			return errors.New("no leader")
		}
		var err error
		if want, err = view(lead.st); err != nil {
			return err
		}
		for _, m := range l.running() {
			got, err := view(m.st)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s differs from the leader %s:\n%s\n---\n%s", m.id, lead.id, got, want)
			}
		}
		return nil
	})
	return want
}

// eventuallyHolds waits until every running member's store holds want
// (a restarted member restores its snapshot first, then replays the log).
func (l *lab) eventuallyHolds(want string) {
	l.t.Helper()
	testenv.Eventually(l.t, 20*time.Second, func() error {
		for _, m := range l.running() {
			got, err := view(m.st)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s holds:\n%s\nwant\n%s", m.id, got, want)
			}
		}
		return nil
	})
}

func (l *lab) leaderNow() *member {
	for _, m := range l.running() {
		if m.n.IsLeader() {
			return m
		}
	}
	return nil
}

// testWriter sends the nodes' logs to the test's log until the lab's
// cleanup closes it. Raft's connection goroutines are not waited for by
// Close and may log as they end; a t.Log after the test completed panics.
type testWriter struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

func setup(l *lab) {
	l.apply(store.PutGroup{Group: api.Group{App: "web", Max: 100}})
	r := l.apply(store.PutRelease{Release: api.Release{App: "web", Digest: "sha256:aa", Command: "./web"}})
	l.apply(store.Activate{App: "web", Version: r.(api.Release).Version, Previous: api.ReleaseSuperseded})
}

func TestReplicatedWrites(t *testing.T) {
	l := newLab(t, nil)
	l.three()
	lead := l.leader(10 * time.Second)
	setup(l)
	g, err := lead.n.UpdateGroup(t.Context(), "web", func(g *api.Group) error { g.Desired = 7; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if g.Desired != 7 || g.Release != 1 {
		t.Fatalf("UpdateGroup returned %+v", g)
	}
	evs := l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "deploy", Release: 1}}}).([]api.Event)
	if len(evs) != 1 || evs[0].Seq == 0 {
		t.Fatalf("append returned %+v", evs)
	}
	if _, err := lead.n.Apply(t.Context(), store.SetDesired{App: "web", Desired: 101}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("desired above max: %v, want the store's ErrInvalid", err)
	}
	want := l.eventuallyEqual()
	t.Logf("every replica holds:\n%s", want)

	// A follower refuses a write and names the leader.
	for _, m := range l.running() {
		if m == lead {
			continue
		}
		_, err := m.n.Apply(t.Context(), store.SetDesired{App: "web", Desired: 1})
		var nl *NotLeaderError
		if !errors.As(err, &nl) || nl.Leader != lead.id || nl.LeaderAddr != lead.addr {
			t.Fatalf("write on follower %s: %v, want NotLeaderError naming %s at %s", m.id, err, lead.id, lead.addr)
		}
		if _, err := m.n.UpdateGroup(t.Context(), "web", func(*api.Group) error { return nil }); !errors.As(err, &nl) {
			t.Fatalf("UpdateGroup on follower %s: %v", m.id, err)
		}
	}
	for _, m := range l.running() {
		st := m.n.Status()
		wantRole := "Follower"
		if m == lead {
			wantRole = "Leader"
		}
		if st.ID != m.id || st.Role != wantRole || st.Leader != lead.id || st.Term == 0 || st.AppliedIndex == 0 ||
			(m != lead && st.LastContact.IsZero()) || (m == lead && !st.LastContact.IsZero()) {
			t.Fatalf("status of %s: %+v (leader %s)", m.id, st, lead.id)
		}
	}
	servers, err := lead.n.Servers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Fatalf("servers %+v", servers)
	}
	for _, s := range servers {
		if !s.Voter || s.Leader != (s.ID == lead.id) || s.Addr != l.nodes[s.ID].addr {
			t.Fatalf("server %+v (leader %s)", s, lead.id)
		}
	}
}

// TestLeaderKilled kills the leader after acknowledged writes: a new
// leader is elected within seconds, holds every acknowledged write, takes
// new ones, and the old leader started again from its data dir catches
// up.
func TestLeaderKilled(t *testing.T) {
	l := newLab(t, nil)
	l.three()
	setup(l)
	var acked []int
	for i := 1; i <= 20; i++ {
		l.apply(store.SetDesired{App: "web", Desired: i})
		l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "scale", Reason: fmt.Sprint(i)}}})
		acked = append(acked, i)
	}
	old := l.leader(10 * time.Second)
	killed := time.Now()
	l.stop(old)
	lead := l.leader(15 * time.Second)
	failover := time.Since(killed)
	t.Logf("failover: %d ms (leader %s killed, %s leads)", failover.Milliseconds(), old.id, lead.id)
	if lead == old {
		t.Fatal("the stopped node leads")
	}
	// A new leader applies what earlier terms committed once it commits
	// in its own term: the Barrier that WhileLeader also waits for.
	lead = l.member(func(m *member) error { return m.n.Barrier(t.Context()) })
	for _, m := range l.running() {
		g, _, err := m.st.GetGroup("web")
		if err != nil {
			t.Fatal(err)
		}
		evs, err := m.st.Events("web", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The new leader has every committed entry; a follower may still
		// be applying the last ones.
		if m != lead {
			continue
		}
		if g.Desired != acked[len(acked)-1] || len(evs) < len(acked) || len(evs) > len(acked)+l.unknown {
			t.Fatalf("new leader %s: desired %d, %d events; want %d and %d (+%d retried after an unknown outcome)", m.id, g.Desired, len(evs), acked[len(acked)-1], len(acked), l.unknown)
		}
		seen := map[string]bool{}
		for _, e := range evs {
			seen[e.Reason] = true
		}
		for _, i := range acked {
			if !seen[fmt.Sprint(i)] {
				t.Fatalf("new leader %s lost the acknowledged event %d", m.id, i)
			}
		}
	}
	l.apply(store.SetDesired{App: "web", Desired: 42})
	l.start(old.id, false)
	want := l.eventuallyEqual()
	if g, _, _ := l.nodes[old.id].st.GetGroup("web"); g.Desired != 42 {
		t.Fatalf("restarted %s: desired %d, want 42\n%s", old.id, g.Desired, want)
	}
}

// TestSnapshotCompactRestore takes snapshots that compact the log, then
// a member that lost its data dir joins again and is sent the snapshot,
// and a member restarted from its data dir is rebuilt from its snapshot
// and log.
func TestSnapshotCompactRestore(t *testing.T) {
	l := newLab(t, func(c *Config) {
		c.TrailingLogs = 5
		c.SnapshotThreshold = 10
		c.SnapshotInterval = time.Hour // snapshots only when the test asks
	})
	l.three()
	setup(l)
	for i := range 40 {
		l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "scale", Reason: fmt.Sprint(i)}}})
	}
	l.apply(store.UpdateEnvOverrides{App: "web", Set: []api.EnvVar{{Name: "MODE", Value: "snap"}}})
	l.eventuallyEqual()
	for _, m := range l.running() {
		if err := m.n.Snapshot(t.Context()); err != nil {
			t.Fatalf("snapshot on %s: %v", m.id, err)
		}
		first, err := m.n.logs.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if last := m.n.raft.LastIndex(); first <= 1 || last-first+1 > 5+1 {
			t.Fatalf("%s: log holds entries %d-%d after a snapshot, want at most TrailingLogs (5)", m.id, first, last)
		}
	}
	// Writes after the snapshot, then a follower loses everything: it
	// is removed, its data dir wiped, and added again. Its log would start
	// before the leader's first entry, so the leader sends the snapshot.
	for i := range 5 {
		l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "late", Reason: fmt.Sprint(i)}}})
	}
	var follower *member
	lead := l.member(func(lead *member) error {
		for _, m := range l.running() {
			if m != lead && (follower == nil || follower == lead) {
				follower = m
			}
		}
		return lead.n.RemoveServer(t.Context(), follower.id)
	})
	l.stop(follower)
	if err := os.RemoveAll(follower.dir); err != nil {
		t.Fatal(err)
	}
	l.start(follower.id, false)
	lead = l.member(func(lead *member) error { return lead.n.AddVoter(t.Context(), follower.id, follower.addr) })
	want := l.eventuallyEqual()
	snaps, err := os.ReadDir(filepath.Join(follower.dir, "raft", "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("the rejoined member has no snapshot (%v): it was not sent one", err)
	}
	// Restart the other follower: its store is rebuilt from its own
	// snapshot and the log after it.
	for _, m := range l.running() {
		if m != lead && m != follower {
			l.stop(m)
			l.start(m.id, false)
		}
	}
	l.eventuallyHolds(want)
}

// TestWhileLeader runs the leader's work on the leader only, with raft's
// term, and moves it to the new leader, under a higher term, when the
// leader stops.
func TestWhileLeader(t *testing.T) {
	l := newLab(t, nil)
	l.three()
	type run struct {
		id   string
		term uint64
	}
	started := make(chan run, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := map[string]chan error{}
	watch := func(m *member) {
		ch := make(chan error, 1)
		done[m.id] = ch
		n := m.n
		go func() {
			ch <- n.WhileLeader(ctx, func(lctx context.Context, term uint64) {
				started <- run{m.id, term}
				<-lctx.Done()
			})
		}()
	}
	for _, m := range l.running() {
		watch(m)
	}
	defer func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
	}()
	lead := l.leader(10 * time.Second)
	var first run
	select {
	case first = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's work never started")
	}
	if first.id != lead.id || first.term != lead.n.Term() || first.term == 0 {
		t.Fatalf("work started on %s in term %d; leader %s, term %d", first.id, first.term, lead.id, lead.n.Term())
	}
	// Stop the leader's WhileLeader and node: the work moves.
	killed := time.Now()
	cancelLead := done[lead.id]
	l.stop(lead)
	if err := <-cancelLead; !errors.Is(err, ErrClosed) { // returns once the work ended
		t.Fatalf("WhileLeader of the closed node: %v, want ErrClosed", err)
	}
	delete(done, lead.id)
	var second run
	select {
	case second = <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("no new leader's work started")
	}
	t.Logf("failover to work restarted: %d ms", time.Since(killed).Milliseconds())
	if second.id == lead.id || second.term <= first.term {
		t.Fatalf("second run %+v after %+v", second, first)
	}
}

// TestTransportRefusesOthers: the raft port takes only certificates of
// role server from the fleet CA.
func TestTransportRefusesOthers(t *testing.T) {
	l := newLab(t, nil)
	a := l.start("a", true)
	l.leader(10 * time.Second)
	// An agent's certificate of the same CA.
	agentCli := agentTLS(t, l)
	other, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherCli, err := pki.ServerClientTLSConfig(other)
	if err != nil {
		t.Fatal(err)
	}
	otherCli.RootCAs = l.cli.RootCAs // trusts our server; presents a foreign client certificate
	for name, cfg := range map[string]*tls.Config{"agent role": agentCli, "other CA": otherCli, "no certificate": {RootCAs: l.cli.RootCAs}} {
		c := cfg.Clone()
		c.ServerName = "127.0.0.1"
		conn, err := tls.Dial("tcp", a.addr, c)
		if err == nil {
			// TLS 1.3: the client's certificate is judged after the
			// client's handshake ends; the refusal arrives on read.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: connection accepted (%v)", name, err)
		}
	}
	// The transport's own dial: a server of the same CA is reached; a
	// dialer that trusts another CA refuses ours.
	st, err := newTLSStream(mustListen(t), "127.0.0.1:1", l.srv, l.cli)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conn, err := st.Dial(raft.ServerAddress(a.addr), 5*time.Second)
	if err != nil {
		t.Fatalf("dial a server of the same CA: %v", err)
	}
	conn.Close()
	otherSrv, err := pki.ServerTLSConfig(other, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	otherCli2, err := pki.ServerClientTLSConfig(other)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := newTLSStream(mustListen(t), "127.0.0.1:1", otherSrv, otherCli2)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if conn, err := st2.Dial(raft.ServerAddress(a.addr), 5*time.Second); err == nil {
		conn.Close()
		t.Fatal("a dialer of another CA accepted our server")
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestOpenRefusesSingleServerStore: a store with data and no raft state
// is a single server's; Open refuses it and changes nothing.
func TestOpenRefusesSingleServerStore(t *testing.T) {
	l := newLab(t, nil)
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutGroup(api.Group{App: "web", Max: 3, Desired: 2}); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Config{ID: "a", Advertise: "127.0.0.1:1", Listener: mustListen(t), DataDir: dir, Store: st,
		ServerTLS: l.srv, ClientTLS: l.cli, Bootstrap: true})
	if err == nil || !strings.Contains(err.Error(), "single server") {
		t.Fatalf("open: %v, want a refusal naming a single server's store", err)
	}
	if g, ok, _ := st.GetGroup("web"); !ok || g.Desired != 2 {
		t.Fatalf("the refused store changed: %+v %v", g, ok)
	}
}

// agentTLS is the client configuration of an agent of l's CA: a
// certificate of role agent.
func agentTLS(t *testing.T, l *lab) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := l.ca.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), pki.Identity{Name: "host1", Role: api.RoleAgent}, 0)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	return &tls.Config{RootCAs: l.cli.RootCAs, Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}}}
}

// TestWholeClusterRestart stops every server and starts them again from
// their data dirs: each store is rebuilt from raft's snapshot and log and
// holds every acknowledged write; the cluster takes writes again.
func TestWholeClusterRestart(t *testing.T) {
	l := newLab(t, func(c *Config) { c.SnapshotThreshold = 16; c.TrailingLogs = 8; c.SnapshotInterval = time.Hour })
	l.three()
	setup(l)
	for i := range 25 {
		l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "scale", Reason: fmt.Sprint(i)}}})
	}
	if err := l.nodes["b"].n.Snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.apply(store.SetDesired{App: "web", Desired: 9})
	want := l.eventuallyEqual()
	for _, id := range []string{"a", "b", "c"} {
		l.stop(l.nodes[id])
	}
	for _, id := range []string{"c", "b", "a"} {
		l.start(id, id == "a") // Bootstrap is ignored with raft state
	}
	l.leader(20 * time.Second)
	l.eventuallyHolds(want)
	l.apply(store.SetDesired{App: "web", Desired: 10})
	l.eventuallyEqual()
}
