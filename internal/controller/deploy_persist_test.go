package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// slowBoot makes the app's command wait before it starts serving, so that
// a rollout to it stays in progress for a while.
func slowBoot(t *testing.T, dir string, cfg *config.App, delay string) *config.App {
	t.Helper()
	p := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "command: "+cfg.Run.Command, fmt.Sprintf("command: \"sleep %s && exec %s\"", delay, cfg.Run.Command), 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// eventsText returns the controller's events, one per line.
func eventsText(t *testing.T, c *Controller) string {
	t.Helper()
	evs, err := c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s v%d %s\n", e.Type, e.Release, e.Reason)
	}
	return b.String()
}

// waitEvents waits until the controller's stored events hold every one of
// wants. Events are stored in the order they happen, after the change
// they describe, so an event that is stored proves that everything it
// follows (store writes, earlier events) has happened.
func waitEvents(t *testing.T, c *Controller, wants ...string) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	var ev string
	err := testenv.WaitFor(ctx, func() error {
		ev = eventsText(t, c)
		for _, w := range wants {
			if !strings.Contains(ev, w) {
				return fmt.Errorf("no event %q yet", w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for events: %v\nevents:\n%s", err, ev)
	}
}

// storedRollout opens the store of cfg (closed by the caller's harness
// beforehand) and returns its rollout record.
func storedRollout(t *testing.T, cfg *config.App) (store.Rollout, bool) {
	t.Helper()
	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, found, err := st.GetRollout(cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	return r, found
}

// TestDeployResumesAfterRestart stops the controller while a deploy's
// new instances are still booting, and checks that the next start
// resumes the deploy to the new release under the same deploy lock.
func TestDeployResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 3)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 2))
	v1pids := map[int]bool{}
	for _, in := range h.c.Status().Instances {
		v1pids[in.PID] = true
	}

	cfg = slowBoot(t, dir, cfg, "2")
	type result struct {
		v   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		v, err := h.deploy(testenv.Context(t, 60*time.Second), DeployRequest{By: "alice@laptop"})
		res <- result{v, err}
	}()
	ctx := testenv.Context(t, 30*time.Second)
	err := testenv.WaitFor(ctx, func() error {
		p := h.c.Rollout()
		if p == nil {
			return errors.New("no rollout yet")
		}
		for _, in := range p.Instances {
			if in.Release == 2 && (in.State == api.Pending || in.State == api.Starting) {
				return nil
			}
		}
		return fmt.Errorf("no v2 instance booting: %+v", p.Instances)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.stop() // as a crash would, from the store's point of view
	r := <-res
	var de *DeployError
	if !errors.As(r.err, &de) || r.v != 2 || !strings.Contains(de.Progress.Reason, "resumes when shoal starts again") {
		t.Fatalf("interrupted Deploy = %d, %v; want a *DeployError about the stop", r.v, r.err)
	}
	rec, found := storedRollout(t, cfg)
	if !found || rec.From != 1 || rec.To != 2 || rec.By != "alice@laptop" || rec.Holder == "" {
		t.Fatalf("stored rollout after the stop: %+v (found %v)", rec, found)
	}

	h2 := start(t, dir, cfg)
	// While the resumed rollout runs, the same holder has the lock again.
	err = testenv.WaitFor(ctx, func() error {
		h2.c.mu.Lock()
		defer h2.c.mu.Unlock()
		if h2.c.dep.active == nil {
			return errors.New("no active rollout")
		}
		hold, _, held := h2.c.dep.lock.Holder("web")
		if !held || hold.ID != rec.Holder || hold.Release != 2 || hold.By != "alice@laptop" {
			return fmt.Errorf("deploy lock %+v held %v during the resumed rollout", hold, held)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h2.waitFor("v2 serving after the restart", onRelease(2, 2))
	// The group's release switches before the lock is freed and the end
	// event is stored.
	waitEvents(t, h2.c, "resuming deploy of v2 interrupted by a restart", "-> v2 ended done")
	err = testenv.WaitFor(ctx, func() error {
		if _, _, held := h2.c.dep.lock.Holder("web"); held {
			return errors.New("deploy lock still held after the resumed rollout ended")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, in := range h2.c.Status().Instances {
		if v1pids[in.PID] {
			t.Errorf("instance %s runs with the pid %d of a v1 instance of the first run", in.ID, in.PID)
		}
	}
	r1, _ := h2.st.GetRelease("web", 1)
	r2, _ := h2.st.GetRelease("web", 2)
	if r1.Status != api.ReleaseSuperseded || r2.Status != api.ReleaseActive {
		t.Errorf("statuses v1 %s v2 %s, want superseded and active", r1.Status, r2.Status)
	}
	if _, found, err := h2.st.GetRollout("web"); found || err != nil {
		t.Errorf("rollout still stored after it ended (%v)", err)
	}
	// No new release was made from the source at the restart.
	if rels, _ := h2.st.Releases("web"); len(rels) != 2 {
		t.Errorf("%d releases after the restart, want 2", len(rels))
	}
}

// TestRollbackFinishesAfterRestart stores a rollout that was rolling back
// when shoal stopped, and checks that the next start finishes going back.
func TestRollbackFinishesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 3)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 2))
	h.stop()

	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := st.GetRelease("web", 1)
	if err != nil {
		t.Fatal(err)
	}
	v2 := api.Release{App: "web", Digest: v1.Digest, Command: v1.Command, ConfigFingerprint: "test",
		Env: append(v1.Env, api.EnvVar{Name: "BROKEN", Value: "1"}), Change: api.ChangeConfig}
	if v2, err = st.PutRelease(v2); err != nil || v2.Version != 2 {
		t.Fatalf("put v2: %+v, %v", v2, err)
	}
	now := time.Now()
	r, err := rollout.New(now, rollout.Spec{Group: "web", From: 1, To: 2, Desired: 2})
	if err != nil {
		t.Fatal(err)
	}
	r.Step(now, []rollout.Instance{{ID: "a", Release: 1, State: api.InService, Since: now},
		{ID: "b", Release: 1, State: api.InService, Since: now}})
	r.Step(now, []rollout.Instance{{ID: "a", Release: 1, State: api.InService, Since: now},
		{ID: "b", Release: 1, State: api.InService, Since: now}, {ID: "c", Release: 2, State: api.Starting, Since: now}})
	if err := r.Abort(now, "test"); err != nil {
		t.Fatal(err)
	}
	snap, _ := json.Marshal(r.Snapshot())
	if err := st.PutRollout(store.Rollout{App: "web", Holder: "deploy-old", By: "bob", From: 1, To: 2, Started: now, State: snap}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	h2 := start(t, dir, cfg)
	h2.waitFor("back on v1", onRelease(1, 2))
	// The group ran v1 all along: its state shows no end of the rollout,
	// the event does, and it is recorded after the outcome.
	waitEvents(t, h2.c, "finishing the rollback to v1 of the deploy of v2 interrupted by a restart", "ended aborted")
	// v2 never served (its one instance was starting): failed, so that
	// it is no rollback target.
	r2, _ := h2.st.GetRelease("web", 2)
	if r2.Status != api.ReleaseFailed {
		t.Errorf("v2 status %s, want failed (it never served)", r2.Status)
	}
	if _, found, _ := h2.st.GetRollout("web"); found {
		t.Error("rollout still stored after the rollback ended")
	}
}

// TestUnusableStoredRolloutIsDropped checks that a damaged record never
// drives a deploy: it is dropped, its release marked failed, and shoal
// starts on the current release.
func TestUnusableStoredRolloutIsDropped(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	h.stop()

	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := st.GetRelease("web", 1)
	if _, err := st.PutRelease(api.Release{App: "web", Digest: v1.Digest, Command: v1.Command, Change: api.ChangeConfig}); err != nil {
		t.Fatal(err)
	}
	err = st.PutRollout(store.Rollout{App: "web", Holder: "h", From: 1, To: 2, State: json.RawMessage(`{"version":99}`)})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	h2 := start(t, dir, cfg)
	h2.waitFor("v1 serving", onRelease(1, 1))
	waitEvents(t, h2.c, "dropped the deploy of v2 interrupted by a restart")
	r2, _ := h2.st.GetRelease("web", 2)
	if r2.Status != api.ReleaseFailed {
		t.Errorf("v2 status %s, want failed", r2.Status)
	}
	if _, found, _ := h2.st.GetRollout("web"); found {
		t.Error("damaged rollout still stored")
	}
}
