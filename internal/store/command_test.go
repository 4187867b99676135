package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// everyCommand is one of each command, in an order that applies cleanly
// to an empty store.
func everyCommand(t0 time.Time) []Command {
	return []Command{
		PutRelease{Release: api.Release{App: "web", Digest: "sha256:aa", Command: "./web",
			Env: []api.EnvVar{{Name: "TOKEN", Value: "s3cret", Secret: true}}, Config: "app: web\n"}},
		PutRelease{Release: api.Release{App: "web", Digest: "sha256:bb", Command: "./web"}},
		PutRelease{Release: api.Release{App: "web", Digest: "sha256:cc", Command: "./web"}},
		PutGroup{Group: api.Group{App: "web", Min: 1, Max: 5, Desired: 2}},
		SetDesired{App: "web", Desired: 4},
		Activate{App: "web", Version: 1, Previous: api.ReleaseSuperseded},
		MarkServed{App: "web", Version: 1, At: t0.Add(-time.Minute)},
		SetReleaseStatus{App: "web", Version: 2, Status: api.ReleaseFailed},
		PutRollout{Rollout: Rollout{App: "web", Holder: "d1", By: "alice", From: 1, To: 3, Started: t0, State: json.RawMessage(`{"phase":"surge"}`)}},
		DeleteRollout{App: "web"},
		AppendEvents{App: "web", Events: []api.Event{{Type: "deploy", Release: 3}, {Type: "state", Instance: "web-1", From: "starting", State: "healthy"}}},
		UpdateEnvOverrides{App: "web", Set: []api.EnvVar{{Name: "A", Value: "1"}, {Name: "S", Value: "x", Secret: true}}},
		UpdateEnvOverrides{App: "web", Unset: []string{"A"}},
		PutHost{Host: api.Host{Name: "h1", URL: "https://10.0.0.1:7000", Zone: "a", CPU: 2, MemoryBytes: 1 << 30, Epoch: "e1", Generation: 3, Joined: t0}},
		PutHost{Host: api.Host{Name: "h2", URL: "https://10.0.0.2:7000", Joined: t0}},
		DeleteHost{Name: "h2"},
		PutToken{Token: api.JoinToken{ID: "t1", SecretHash: bytes.Repeat([]byte{1}, 32), Role: api.RoleAgent, Created: t0, Expires: t0.Add(time.Hour)}},
		PutToken{Token: api.JoinToken{ID: "t2", SecretHash: bytes.Repeat([]byte{2}, 32), Role: api.RoleLB, Created: t0, Expires: t0.Add(time.Hour)}},
		TakeToken{ID: "t1", By: "h1"},
		DeleteToken{ID: "t2"},
		PutKey{Name: "sticky", Key: bytes.Repeat([]byte{9}, 32)},
		PutMember{Member: api.ClusterMember{ID: "s1", AdminURL: "http://127.0.0.1:7440", FleetURL: "https://127.0.0.1:7443"}},
		PruneReleases{App: "web", Keep: 1, Protect: []int{3}},
	}
}

// contents is every key of every bucket of s, as text.
func contents(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	var walk func(prefix string, bk *bolt.Bucket) error
	walk = func(prefix string, bk *bolt.Bucket) error {
		fmt.Fprintf(&b, "%s seq=%d\n", prefix, bk.Sequence())
		return bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), bk.Bucket(k))
			}
			fmt.Fprintf(&b, "%s/%q = %s\n", prefix, k, v)
			return nil
		})
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error { return walk(string(name), bk) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCommandsReplicate applies every command, through its encoded record,
// to two stores whose own clocks differ: they end equal, stamped with the
// commands' times, and the results are the write methods' results.
func TestCommandsReplicate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	a := open(t, filepath.Join(dir, "a.db"), Options{Now: func() time.Time { return t0.Add(99 * time.Hour) }})
	b := open(t, filepath.Join(dir, "b.db"), Options{Now: func() time.Time { return t0.Add(-99 * time.Hour) }})
	for i, c := range everyCommand(t0) {
		at := t0.Add(time.Duration(i) * time.Second)
		enc, err := EncodeCommand(c, at)
		if err != nil {
			t.Fatalf("encode %s: %v", c.Op(), err)
		}
		dec, decAt, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("decode %s: %v", c.Op(), err)
		}
		if !decAt.Equal(at) {
			t.Fatalf("%s: decoded time %v, want %v", c.Op(), decAt, at)
		}
		for _, s := range []*Store{a, b} {
			res, err := s.Apply(dec, decAt)
			if err != nil {
				t.Fatalf("apply %s (%s): %v", c.Op(), enc, err)
			}
			switch c := c.(type) {
			case PutRelease:
				if r := res.(api.Release); !r.CreatedAt.Equal(at) || r.Version < 1 {
					t.Fatalf("put release: got %+v, want version set and CreatedAt %v", r, at)
				}
			case AppendEvents:
				if evs := res.([]api.Event); len(evs) != len(c.Events) || !evs[0].Time.Equal(at) {
					t.Fatalf("append events: got %+v", evs)
				}
			case TakeToken:
				if found := res.(bool); !found {
					t.Fatal("take token: not found")
				}
			case PutKey:
				if k := res.([]byte); !bytes.Equal(k, c.Key) {
					t.Fatalf("put key: got %x", k)
				}
			case PruneReleases:
				if rels := res.([]api.Release); len(rels) != 1 || rels[0].Version != 2 {
					t.Fatalf("prune: deleted %+v, want v2", rels)
				}
			}
		}
	}
	ca, cb := contents(t, a), contents(t, b)
	if ca != cb {
		t.Fatalf("replicas differ:\n%s\n---\n%s", ca, cb)
	}
	g, _, err := a.GetGroup("web")
	if err != nil {
		t.Fatal(err)
	}
	if g.Desired != 4 || g.Release != 1 || !g.UpdatedAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("group %+v, want desired 4, release 1, updated at the Activate's time", g)
	}
	if _, err := a.Apply(PutKey{Name: "sticky", Key: []byte{1}}, t0); err != nil {
		t.Fatal(err)
	} else if k, _ := a.Key("sticky", 1); len(k) != 32 {
		t.Fatalf("a second PutKey replaced the key: %x", k)
	}
}

func TestSwapGroupConflict(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	if _, err := s.Apply(PutGroup{Group: api.Group{App: "web", Max: 5, Desired: 1}}, t0); err != nil {
		t.Fatal(err)
	}
	read, _, err := s.GetGroup("web")
	if err != nil {
		t.Fatal(err)
	}
	next := read
	next.Desired = 3
	got, err := s.Apply(SwapGroup{Prev: read, Next: next}, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if g := got.(api.Group); g.Desired != 3 || !g.UpdatedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("swap stored %+v", g)
	}
	// The same swap again: the stored group is no longer the one read.
	next.Desired = 2
	if _, err := s.Apply(SwapGroup{Prev: read, Next: next}, t0.Add(2*time.Second)); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale swap: err %v, want ErrConflict", err)
	}
	if g, _, _ := s.GetGroup("web"); g.Desired != 3 {
		t.Fatalf("stale swap wrote: %+v", g)
	}
	// A swap is checked as UpdateGroup checks.
	bad := got.(api.Group)
	bad2 := bad
	bad2.Desired = 9
	if _, err := s.Apply(SwapGroup{Prev: bad, Next: bad2}, t0.Add(3*time.Second)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("desired above max: err %v, want ErrInvalid", err)
	}
	if _, err := s.Apply(TakeToken{ID: "none", By: "h"}, t0); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	for _, tc := range []struct{ rec, want string }{
		{`{"v":2,"op":"put_group"}`, "command version 2"},
		{`{"v":1,"op":"drop_everything"}`, `unknown operation "drop_everything"`},
		{`{"v":1,"op":"put_group"}`, "no group"},
		{`{"v":1,"op":"put_release","release":{"env":[{"name":"T","value":123}]}}`, "wrong type"},
		{`not json`, "invalid JSON"},
	} {
		_, _, err := DecodeCommand([]byte(tc.rec))
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrSchema saying %q", tc.rec, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "123") {
			t.Errorf("%s: error quotes the record: %v", tc.rec, err)
		}
	}
}

// TestSnapshotReplace copies a store through Snapshot into another with
// other content: it ends equal, sequences included, and writes made after
// the snapshot began are not in the copy.
func TestSnapshotReplace(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	a := open(t, filepath.Join(dir, "a.db"), Options{})
	b := open(t, filepath.Join(dir, "b.db"), Options{})
	for i, c := range everyCommand(t0) {
		if _, err := a.Apply(c, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Apply(PutGroup{Group: api.Group{App: "other", Max: 1}}, t0); err != nil {
		t.Fatal(err)
	}
	want := contents(t, a)
	sn, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if _, err := a.Apply(AppendEvents{App: "web", Events: []api.Event{{Type: "late"}}}, t0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.ReplaceFrom(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, b); got != want {
		t.Fatalf("replaced store differs:\n%s\n---\n%s", got, want)
	}
	// b goes on from the copied sequences: the next release is v4.
	r, err := b.Apply(PutRelease{Release: api.Release{App: "web", Digest: "sha256:dd"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if v := r.(api.Release).Version; v != 4 {
		t.Fatalf("next release after replace: v%d, want v4", v)
	}
	// A damaged snapshot changes nothing.
	before := contents(t, b)
	if err := b.ReplaceFrom(bytes.NewReader(buf.Bytes()[:buf.Len()/2])); err == nil {
		t.Fatal("half a snapshot was accepted")
	}
	if contents(t, b) != before {
		t.Fatal("a refused snapshot changed the store")
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if empty, err := b.Empty(); err != nil || !empty {
		t.Fatalf("after Reset: empty %v, %v", empty, err)
	}
	if empty, err := a.Empty(); err != nil || empty {
		t.Fatalf("a: empty %v, %v", empty, err)
	}
}

// FuzzDecodeCommand: any record either is refused with ErrSchema or
// decodes to a command that encodes and decodes again to the same
// command and time.
func FuzzDecodeCommand(f *testing.F) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range everyCommand(t0) {
		enc, err := EncodeCommand(c, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte(`{"v":1,"op":"put_host","name":"h","host":{"version":2}}`))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, at, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrSchema) && !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is neither ErrSchema nor damage", err)
			}
			return
		}
		enc, err := EncodeCommand(c, at)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", c, err)
		}
		c2, at2, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", enc, err)
		}
		enc2, err := EncodeCommand(c2, at2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip differs:\n%s\n%s (%v)", enc, enc2, err)
		}
	})
}
