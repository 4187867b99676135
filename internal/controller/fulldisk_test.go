package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/api"
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
