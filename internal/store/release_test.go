package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestServedDecidesSupersededOrFailed checks that only a release that
// served becomes superseded or rolled_back when replaced; one that never
// served becomes failed. MarkServed keeps the first time.
func TestServedDecidesSupersededOrFailed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 1}); err != nil {
		t.Fatal(err)
	}
	var rels []api.Release
	for range 3 {
		r, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:x"})
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.MarkServed("web", 1, first); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkServed("web", 1, first.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkServed("web", 9, first); err == nil {
		t.Error("MarkServed of a missing release: no error")
	}
	// v1 served and is replaced by v2: superseded. v2 never served and
	// is replaced by v3: failed, although the caller said superseded.
	for _, v := range []int{1, 2, 3} {
		if err := s.Activate("web", v, api.ReleaseSuperseded); err != nil {
			t.Fatal(err)
		}
	}
	r1, _ := s.GetRelease("web", 1)
	r2, _ := s.GetRelease("web", 2)
	if r1.Status != api.ReleaseSuperseded || !r1.Served.Equal(first) || !r1.HasServed() {
		t.Errorf("v1: %s served %v, want superseded, first served %v", r1.Status, r1.Served, first)
	}
	if r2.Status != api.ReleaseFailed || r2.HasServed() {
		t.Errorf("v2: %s served %v, want failed (never served)", r2.Status, r2.Served)
	}
	// A rollback away from a v3 that never served: failed, not rolled_back.
	if err := s.Activate("web", 1, api.ReleaseRolledBack); err != nil {
		t.Fatal(err)
	}
	if r3, _ := s.GetRelease("web", 3); r3.Status != api.ReleaseFailed {
		t.Errorf("v3: %s, want failed", r3.Status)
	}
	// A status change keeps Served.
	if err := s.SetReleaseStatus("web", 1, api.ReleaseRolledBack); err != nil {
		t.Fatal(err)
	}
	if r1, _ := s.GetRelease("web", 1); !r1.Served.Equal(first) {
		t.Errorf("v1 served %v after a status change, want %v", r1.Served, first)
	}
}

// TestReleaseRecordWithoutServedLoads checks that a release record
// written before served_at existed still loads, and that its status says
// whether it served.
func TestReleaseRecordWithoutServedLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s := open(t, path, Options{})
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 1}); err != nil {
		t.Fatal(err)
	}
	old := map[int]string{
		1: `{"version":1,"app":"web","digest":"sha256:a","command":"./web","created_at":"2025-01-01T00:00:00Z","status":"superseded"}`,
		2: `{"version":2,"app":"web","digest":"sha256:b","command":"./web","created_at":"2025-01-01T00:00:00Z","status":"failed"}`,
		3: `{"version":3,"app":"web","digest":"sha256:c","command":"./web","created_at":"2025-01-01T00:00:00Z","status":"rolled_back"}`,
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketReleases).CreateBucketIfNotExists([]byte("web"))
		if err != nil {
			return err
		}
		for v, rec := range old {
			if err := b.Put(itob(uint64(v)), []byte(rec)); err != nil {
				return err
			}
		}
		return b.SetSequence(3)
	})
	if err != nil {
		t.Fatal(err)
	}
	rels, err := s.Releases("web")
	if err != nil || len(rels) != 3 {
		t.Fatalf("Releases = %+v, %v", rels, err)
	}
	for _, r := range rels {
		want := r.Version != 2
		if r.CPU != 0 || r.Memory != 0 {
			t.Errorf("old v%d: cpu %v, memory %d; want none declared", r.Version, r.CPU, r.Memory)
		}
		if r.Config != "" || r.DeployedEnv != nil {
			t.Errorf("old v%d: Config %q, DeployedEnv %v; want none (made before releases kept them)", r.Version, r.Config, r.DeployedEnv)
		}
		if r.HasServed() != want || !r.Served.IsZero() {
			t.Errorf("old v%d (%s): HasServed %v, Served %v; want %v and zero", r.Version, r.Status, r.HasServed(), r.Served, want)
		}
	}
	// Written again, the record gains served_at only once it served.
	if err := s.MarkServed("web", 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		raw := string(releaseBucket(tx, "web").Get(itob(2)))
		if !strings.Contains(raw, `"served_at"`) {
			t.Errorf("record after MarkServed: %s", raw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReleaseKeepsCPUAndMemory: a release's declared CPU and memory
// (run.cpu, run.memory) are stored with it and survive a reopen.
func TestReleaseKeepsCPUAndMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s := open(t, path, Options{})
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:a", Command: "./web", CPU: 0.25, Memory: 256 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, Options{})
	r, err := s.GetRelease("web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU != 0.25 || r.Memory != 256<<20 {
		t.Errorf("reopened v1: cpu %v, memory %d; want 0.25 and %d", r.CPU, r.Memory, 256<<20)
	}
}

// TestMarkServedAgainWritesNothing: once a release is marked served,
// marking it again (every instance of it does, as it comes into service)
// neither changes the record nor rewrites the automatic backup, which
// copies the whole store.
func TestMarkServedAgainWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s := open(t, path, Options{})
	if _, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:x"}); err != nil {
		t.Fatal(err)
	}
	bak := BackupPath(path)
	if err := os.Remove(bak); err != nil {
		t.Fatalf("no backup after PutRelease: %v", err)
	}
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.MarkServed("web", 1, first); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bak); err != nil {
		t.Fatalf("the first MarkServed left no backup: %v", err)
	}
	if err := os.Remove(bak); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.MarkServed("web", 1, first.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(bak); !os.IsNotExist(err) {
		t.Errorf("MarkServed of a served release wrote a backup (stat: %v)", err)
	}
	if r, _ := s.GetRelease("web", 1); !r.Served.Equal(first) {
		t.Errorf("served %v, want the first time %v", r.Served, first)
	}
	// A change of desired state still backs up.
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 3, Desired: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bak); err != nil {
		t.Errorf("PutGroup after it left no backup: %v", err)
	}
}
