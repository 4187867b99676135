package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestBackupRestore backs up a cluster's state through its leader,
// restores the file into a new 3-node cluster, and reads everything back
// on every new replica, also after the restored server restarts.
func TestBackupRestore(t *testing.T) {
	l := newLab(t, nil)
	l.three()
	setup(l)
	l.apply(store.SetDesired{App: "web", Desired: 7})
	l.apply(store.UpdateEnvOverrides{App: "web", Set: []api.EnvVar{{Name: "MODE", Value: "backup"}}})
	l.apply(store.AppendEvents{App: "web", Events: []api.Event{{Type: "deploy", Release: 1}}})
	l.apply(store.PutHost{Host: api.Host{Name: "h1", URL: "https://10.0.0.1:7946", Zone: "z1"}})
	want := l.eventuallyEqual()

	file := filepath.Join(t.TempDir(), "cluster.backup")
	var lead *member
	lead = l.member(func(m *member) error {
		f, err := os.Create(file)
		if err != nil {
			return err
		}
		err = m.n.Backup(t.Context(), f)
		return errors.Join(err, f.Close())
	})
	for _, m := range l.running() {
		if m == lead {
			continue
		}
		if err := m.n.Backup(t.Context(), &strings.Builder{}); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("backup on follower %s: %v, want ErrNotLeader", m.id, err)
		}
	}
	sum, err := store.Verify(file)
	if err != nil {
		t.Fatalf("verify the backup: %v", err)
	}
	if sum.Apps["web"] != 1 || sum.Releases != 1 || sum.LastEvent == 0 {
		t.Fatalf("backup summary %+v", sum)
	}

	// A new cluster from the file: the first server's data dir is
	// prepared by Restore, the others join empty.
	l2 := newLab(t, nil)
	addr := testenv.FreeAddr(t)
	a := &member{id: "a", dir: filepath.Join(t.TempDir(), "a"), addr: addr}
	l2.nodes["a"] = a
	if err := Restore(a.dir, "a", addr, file); err != nil {
		t.Fatal(err)
	}
	if err := l2.open(a, true); err != nil {
		t.Fatal(err)
	}
	l2.leader(10 * time.Second)
	for _, id := range []string{"b", "c"} {
		m := l2.start(id, false)
		l2.member(func(lead *member) error { return lead.n.AddVoter(t.Context(), id, m.addr) })
	}
	l2.eventuallyHolds(want)
	if got := l2.eventuallyEqual(); got != want {
		t.Fatalf("restored cluster holds:\n%s\nwant\n%s", got, want)
	}
	if n := len(l2.running()); n != 3 {
		t.Fatalf("%d servers running", n)
	}
	// It takes writes, and the restored server keeps its state across a
	// restart (the store is rebuilt from the snapshot and the log).
	l2.apply(store.SetDesired{App: "web", Desired: 8})
	after := l2.eventuallyEqual()
	l2.stop(a)
	l2.start("a", false)
	l2.eventuallyHolds(after)
}

// TestRestoreRefuses: a damaged backup is refused by name and writes
// nothing; a data dir with raft state is refused and left as it was.
func TestRestoreRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.backup")
	if err := os.WriteFile(bad, []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "server")
	err := Restore(target, "a", "127.0.0.1:7000", bad)
	var de *store.DamagedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("restore of a damaged file: %v, want a DamagedError naming %s", err, bad)
	}
	if _, err := os.Stat(filepath.Join(target, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore wrote %s (%v)", filepath.Join(target, "raft"), err)
	}

	good := filepath.Join(dir, "good.backup")
	st, err := store.Open(filepath.Join(dir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutGroup(api.Group{App: "web", Max: 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteBackup(good); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := Restore(target, "a", "127.0.0.1:7000", good); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadDir(filepath.Join(target, "raft", "snapshots"))
	if err != nil || len(before) != 1 {
		t.Fatalf("snapshots after restore: %v %v", before, err)
	}
	err = Restore(target, "a", "127.0.0.1:7000", good)
	if err == nil || !strings.Contains(err.Error(), "already holds raft state") {
		t.Fatalf("restore over raft state: %v, want a refusal", err)
	}
	if again, _ := os.ReadDir(filepath.Join(target, "raft", "snapshots")); len(again) != 1 || again[0].Name() != before[0].Name() {
		t.Fatalf("the refused restore changed the snapshots: %v", again)
	}
}
