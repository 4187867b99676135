package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// writes makes the controllers' kinds of writes through w.
func writes(t *testing.T, w store.Writer, t0 time.Time) {
	t.Helper()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	r1, err := w.PutRelease(api.Release{App: "web", Digest: "sha256:aa", Command: "./web", Env: []api.EnvVar{{Name: "T", Value: "s", Secret: true}}})
	check(err)
	r2, err := w.PutRelease(api.Release{App: "web", Digest: "sha256:bb", Command: "./web"})
	check(err)
	check(w.PutGroup(api.Group{App: "web", Max: 10, Desired: 1}))
	check(w.Activate("web", r1.Version, api.ReleaseSuperseded))
	check(w.MarkServed("web", r1.Version, t0))
	check(w.PutRollout(store.Rollout{App: "web", Holder: "d", From: r1.Version, To: r2.Version, Started: t0, State: json.RawMessage(`{"a":1}`)}))
	check(w.SetReleaseStatus("web", r2.Version, api.ReleaseFailed))
	check(w.DeleteRollout("web"))
	g, err := w.UpdateGroup("web", func(g *api.Group) error { g.Desired += 2; g.AutoscalePaused = true; return nil })
	check(err)
	if g.Desired != 3 {
		t.Fatalf("UpdateGroup: %+v", g)
	}
	check(w.SetDesired("web", 4))
	if err := w.SetDesired("web", 11); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("desired above max: %v", err)
	}
	_, err = w.AppendEvent("web", api.Event{Type: "deploy", Release: r2.Version})
	check(err)
	evs, err := w.AppendEvents("web", []api.Event{{Type: "a"}, {Type: "b"}})
	check(err)
	if len(evs) != 2 || evs[1].Seq != evs[0].Seq+1 {
		t.Fatalf("AppendEvents: %+v", evs)
	}
	env, err := w.UpdateEnvOverrides("web", []api.EnvVar{{Name: "X", Value: "1"}}, nil)
	check(err)
	if len(env) != 1 {
		t.Fatalf("env %+v", env)
	}
	pruned, err := w.PruneReleases("web", 1)
	check(err)
	if len(pruned) != 1 || pruned[0].Version != r2.Version {
		t.Fatalf("pruned %+v", pruned)
	}
	k1, err := w.Key("sticky", 32)
	check(err)
	k2, err := w.Key("sticky", 16)
	check(err)
	if len(k1) != 32 || !bytes.Equal(k1, k2) {
		t.Fatalf("keys %x, %x", k1, k2)
	}
}

// TestWriterAgreesWithStore: the same writes through a plain store and
// through the cluster's Writer leave the same state, on every replica.
func TestWriterAgreesWithStore(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return t0 }
	plain, err := store.Open(filepath.Join(t.TempDir(), "shoal.db"), store.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	writes(t, plain, t0)
	want, err := view(plain)
	if err != nil {
		t.Fatal(err)
	}

	l := newLab(t, func(c *Config) { c.Now = clock })
	l.three()
	lead := l.member(func(*member) error { return nil })
	writes(t, Writer{Node: lead.n}, t0)
	if got := l.eventuallyEqual(); got != want {
		t.Fatalf("cluster holds:\n%s\nplain store:\n%s", got, want)
	}
	k, _, _ := lead.st.HasKey("sticky")
	for _, m := range l.running() {
		testenv.Eventually(t, 10*time.Second, func() error {
			if got, ok, err := m.st.HasKey("sticky"); err != nil || !ok || !bytes.Equal(got, k) {
				return fmt.Errorf("%s: key %x %v %v, want the leader's", m.id, got, ok, err)
			}
			return nil
		})
		if m == lead {
			continue
		}
		var nl *NotLeaderError
		if err := (Writer{Node: m.n}).SetDesired("web", 2); !errors.As(err, &nl) {
			t.Fatalf("write through follower %s: %v, want NotLeaderError", m.id, err)
		}
	}
}

// The fleet's registry takes a replicated server's host records.
var _ fleet.HostStore = Hosts{}

var errUsed = errors.New("token used")

// TestHostsAndTokens: the fleet's host records and join tokens through a
// replicated server, and a token taken by concurrent joins once.
func TestHostsAndTokens(t *testing.T) {
	l := newLab(t, nil)
	l.three()
	lead := l.member(func(*member) error { return nil })
	w := Writer{Node: lead.n}
	t0 := time.Now().UTC()
	if err := w.Hosts().Put(api.Host{Name: "h1", URL: "https://10.0.0.1:7000", Joined: t0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Hosts().Put(api.Host{Name: "h2", URL: "https://10.0.0.2:7000", Joined: t0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Hosts().Delete("h2"); err != nil {
		t.Fatal(err)
	}
	tok := api.JoinToken{ID: "t1", SecretHash: bytes.Repeat([]byte{1}, 32), Role: api.RoleAgent, Created: t0, Expires: t0.Add(time.Hour)}
	if err := w.Tokens().Put(tok); err != nil {
		t.Fatal(err)
	}
	const joins = 6
	type outcome struct {
		found bool
		err   error
	}
	out := make(chan outcome, joins)
	for i := range joins {
		go func() {
			found, err := w.Tokens().Take("t1", fmt.Sprintf("host%d", i), func(t api.JoinToken) error {
				if t.Used {
					return errUsed
				}
				return nil
			})
			out <- outcome{found, err}
		}()
	}
	won := 0
	for range joins {
		o := <-out
		switch {
		case o.err == nil && o.found:
			won++
		case errors.Is(o.err, errUsed) && o.found:
		default:
			t.Errorf("take: found %v, err %v", o.found, o.err)
		}
	}
	if won != 1 {
		t.Fatalf("%d joins took the token, want 1", won)
	}
	if found, err := w.Tokens().Take("nope", "h", func(api.JoinToken) error { return nil }); found || err != nil {
		t.Fatalf("unknown token: %v %v", found, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, m := range l.running() {
			hosts, err := m.st.Hosts().List()
			if err != nil {
				return err
			}
			toks, err := m.st.Tokens().List()
			if err != nil {
				return err
			}
			if len(hosts) != 1 || hosts[0].Name != "h1" || len(toks) != 1 || !toks[0].Used {
				return fmt.Errorf("%s: hosts %+v, tokens %+v", m.id, hosts, toks)
			}
		}
		return nil
	})
}
