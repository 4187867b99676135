package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/rollout"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// tmpfs mounts a small tmpfs at a new directory and unmounts it at the end;
// it skips the test when mounting is not allowed (not root).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file until the file system at dir is full, bounded by
// max bytes, and returns it.
func fillDisk(t *testing.T, dir string, max int) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for n := 0; n < max; n += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
	t.Fatalf("the file system at %s did not fill up after %d bytes", dir, max)
	return ""
}

// TestFullDiskNothingDropped: with the store on a full disk an operator's
// action (scale) fails with the disk error and changes nothing; events the
// controller observes meanwhile (an instance killed) are kept, counted and
// written, in order, once there is room again.
func TestFullDiskNothingDropped(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 3)
	cfg.DataDir = tmpfs(t, "16m")
	h := start(t, dir, cfg)
	st := h.waitFor("1 in service", inService(1))
	pid := st.Instances[0].PID

	filler := fillDisk(t, cfg.DataDir, 64<<20)
	// The store file still has free pages, and a write that fits in them
	// succeeds (it is then recorded, as it should be). Use them up, then
	// scale; repeat until a scale finds no room, bounded.
	var refused error
	desired, changes := 1, 0
	for try := 0; try < 50 && refused == nil; try++ {
		for i := 0; i < 100000; i++ {
			if _, err := h.st.AppendEvent("filler", api.Event{Type: "filler", Reason: "f"}); err != nil {
				if !strings.Contains(err.Error(), "no space left on device") {
					t.Fatalf("store write on a full disk: %v", err)
				}
				break
			}
		}
		want := 2 + try%2
		if refused = h.c.Scale(context.Background(), want); refused == nil {
			desired = want
			changes++
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "no space left on device") || !strings.Contains(refused.Error(), "nothing changed") {
		t.Fatalf("Scale on a full disk = %v, want an error naming the full disk", refused)
	}
	if d := h.c.Status().Desired; d != desired {
		t.Fatalf("desired %d after a refused scale, want %d", d, desired)
	}
	if g, _, err := h.st.GetGroup("web"); err != nil || g.Desired != desired {
		t.Fatalf("stored group %+v %v, want desired %d", g, err, desired)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	if err := testenv.WaitFor(ctx, func() error {
		if hl := h.c.EventLogHealth(); hl.Pending == 0 || hl.WriteErrors == 0 || hl.LastError == "" {
			return fmt.Errorf("event log %+v, want events pending after failed writes", hl)
		}
		if p := h.c.Status().Events; !strings.Contains(p, "no space left on device") {
			return fmt.Errorf("status says %q about events, want the disk error", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, func() error {
		if hl := h.c.EventLogHealth(); hl.Pending != 0 || hl.LastError != "" || hl.Dropped != 0 || h.c.Status().Events != "" {
			return fmt.Errorf("event log %+v, want everything written", hl)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := h.st.Events("web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var scales []string
	var sawKill bool
	for i, e := range stored {
		if i > 0 && e.Seq <= stored[i-1].Seq {
			t.Errorf("event %d has seq %d after %d", i, e.Seq, stored[i-1].Seq)
		}
		if e.Type == "scale" {
			scales = append(scales, e.Reason)
		}
		sawKill = sawKill || (e.Type == "state" && e.State == "failed")
	}
	// Every scale that happened is recorded, the refused one is not.
	if !sawKill || len(scales) != changes {
		t.Fatalf("after the full disk: kill recorded %v, scales recorded %q (desired now %d)", sawKill, scales, desired)
	}
	if err := h.c.Scale(context.Background(), 2+desired%2); err != nil {
		t.Fatalf("Scale with room again: %v", err)
	}
}

// fillOnStart is a Host that fills the disk (and the store's free pages)
// when it has started (or failed to start) the first instance of release
// fullAt, so that what the controller writes about that instance meets a
// full disk.
type fillOnStart struct {
	*LocalHost
	t       *testing.T
	fullAt  int
	fill    func() // fills the disk; called once, from Start
	started atomic.Bool
}

func (f *fillOnStart) Start(ctx context.Context, spec LaunchSpec) (Running, error) {
	r, err := f.LocalHost.Start(ctx, spec)
	// After the host's own clean-up of the failed start, which frees
	// space, and before the controller records the failure.
	if spec.Release == f.fullAt && f.started.CompareAndSwap(false, true) {
		f.fill()
	}
	return r, err
}

// TestReleaseStatusKeptUntilStored: a release whose instances cannot
// start while the disk is full (the store took the release, not the later
// writes) is not left pending for the next start. Marking it failed and
// the rollout's outcome are kept and retried in order with the events,
// named in Status and counted in shoal_state_writes_pending meanwhile,
// and stored exactly once there is room: the release failed, the stored
// rollout gone, the events in the order they happened.
func TestReleaseStatusKeptUntilStored(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	cfg.DataDir = tmpfs(t, "16m")
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	v1 := h.c.Release()
	h.stop()

	// v2 will name an artifact that is not a gzip stream: it cannot start.
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := release.DigestPrefix + strings.Repeat("cd", 32)
	if err := os.WriteFile(arts.Path(bad), []byte("not a tar.gz"), 0o644); err != nil {
		t.Fatal(err)
	}

	var h2 *harness
	var filler string
	fill := func() {
		filler = fillDisk(t, cfg.DataDir, 64<<20)
		// The store file may still have free pages, and pages a refused
		// write backed before it failed, so a write can succeed on a
		// full disk. Use them up with growing writes (new keys, largest
		// first) until the very write the test is about (v2's status,
		// written with the status it has) and an event are refused, the
		// status write three times in a row.
		n := 0
		for round := 0; round < 50; round++ {
			for _, size := range []int{16 << 10, 4 << 10, 1 << 10, 128, 1} {
				for i := 0; i < 1000; i++ {
					n++
					if _, err := h2.st.Key(fmt.Sprintf("filler-%d", n), size); err != nil {
						break
					}
				}
			}
			refused := 0
			for i := 0; i < 3; i++ {
				if h2.st.SetReleaseStatus("web", 2, api.ReleasePending) != nil {
					refused++
				}
			}
			if _, err := h2.st.AppendEvent("filler", api.Event{Type: "filler", Reason: "f"}); err != nil && refused == 3 {
				return
			}
		}
		t.Errorf("the store still takes writes on a full disk")
	}
	cfg2 := reload(t, cfg)
	cfg2.DataDir = cfg.DataDir
	h2 = startOn(t, dir, cfg2, pool.Options{Name: "web", DrainTimeout: time.Second}, func(l *LocalHost) Host {
		return &fillOnStart{LocalHost: l, t: t, fullAt: 2, fill: fill}
	})
	h2.waitFor("v1 serving", onRelease(1, 1))
	// Made now, not before the start: a start fails pending releases
	// that no rollout holds (abandonPending).
	if _, err := h2.st.PutRelease(api.Release{App: "web", Digest: bad, Command: v1.Command, Env: v1.Env,
		ConfigFingerprint: v1.ConfigFingerprint, Change: api.ChangeCode}); err != nil {
		t.Fatal(err)
	}
	err = h2.c.Rollback(testenv.Context(t, 60*time.Second), 2)
	var de *DeployError
	// Rolled back; or failed, when going back needed a new v1 instance
	// that the full disk refused too (its pid file).
	if !errors.As(err, &de) || (de.Progress.Phase != rollout.PhaseRolledBack && de.Progress.Phase != rollout.PhaseFailed) ||
		!strings.Contains(err.Error(), "release v2 cannot start: ") {
		t.Fatalf("rollout to v2: %v; want turned back because v2 cannot start", err)
	}
	phase := de.Progress.Phase
	if filler == "" {
		t.Fatal("the disk was not filled")
	}

	// While the disk is full: the store still says pending (it refused
	// the change), and what waits is visible.
	if r2, err := h2.st.GetRelease("web", 2); err != nil || r2.Status != api.ReleasePending {
		t.Fatalf("v2 in the store on the full disk: %s %v; want pending (the write refused)", r2.Status, err)
	}
	hl := h2.c.EventLogHealth()
	if want := []string{"release v2 failed", "the outcome of the rollout to v2 (" + phase.String() + ")", "the end of the rollout to v2"}; !slices.Equal(hl.PendingWrites, want) {
		t.Errorf("pending writes %q, want %q", hl.PendingWrites, want)
	}
	if p := h2.c.Status().Events; !strings.Contains(p, "release v2 failed") || !strings.Contains(p, "no space left on device") {
		t.Errorf("status problem %q, want the waiting release status and the disk error", p)
	}
	if v := gaugeValue(t, h2.c, "shoal_state_writes_pending"); v != 3 {
		t.Errorf("shoal_state_writes_pending = %v, want 3", v)
	}
	// A new release must not overtake the records that wait: refused,
	// naming the disk, even if the store had room for it.
	ctx := testenv.Context(t, 60*time.Second)
	if _, err := h2.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{}); err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("env set while the outcome of the last rollout waits: %v; want refused naming the disk", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, func() error {
		if hl := h2.c.EventLogHealth(); hl.Pending != 0 || len(hl.PendingWrites) != 0 || hl.LastError != "" || h2.c.Status().Events != "" {
			return fmt.Errorf("event log %+v, want everything stored", hl)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := gaugeValue(t, h2.c, "shoal_state_writes_pending"); v != 0 {
		t.Errorf("shoal_state_writes_pending = %v once stored, want 0", v)
	}
	r2, err := h2.st.GetRelease("web", 2)
	if err != nil || r2.Status != api.ReleaseFailed {
		t.Errorf("v2 once there is room: %s %v; want failed", r2.Status, err)
	}
	if r1, err := h2.st.GetRelease("web", 1); err != nil || r1.Status != api.ReleaseActive {
		t.Errorf("v1 once there is room: %s %v; want active", r1.Status, err)
	}
	if _, found, err := h2.st.GetRollout("web"); err != nil || found {
		t.Errorf("stored rollout once there is room: found %v %v; want none", found, err)
	}
	// In the order they happened: v2 cannot start, then the rollout ends.
	ev := eventsText(t, h2.c)
	i, j := strings.Index(ev, "release v2 cannot start"), strings.Index(ev, "-> v2 ended "+phase.String())
	if i < 0 || j < 0 || i > j {
		t.Errorf("events out of order or missing (cannot start at %d, ended at %d):\n%s", i, j, ev)
	}
	// And the group can move again.
	if v, err := h2.c.SetEnv(ctx, []api.EnvVar{{Name: "FEATURE", Value: "on"}}, nil, DeployRequest{}); err != nil || v != 3 {
		t.Errorf("env set with room again: v%d %v; want v3", v, err)
	}
}

// gaugeValue returns the value of the controller's metric name.
func gaugeValue(t *testing.T, c *Controller, name string) float64 {
	t.Helper()
	mfs, err := c.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
