package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUpOnFullDisk runs `shoal up` with its data directory on a small
// tmpfs that the test fills: a scale, an env change and a deploy are
// refused with the disk's error (a deploy's build on the same disk, or its
// upload from another folder) and change nothing (the old release keeps
// serving, the desired count stays); once space is freed, the events that
// could not be written while it was full appear in `shoal events`, none
// dropped, and a release made on the full disk that could not start,
// pending meanwhile only while status names its waiting failure, is
// failed. Needs root to mount the tmpfs; skipped otherwise.
func TestUpOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 3)
	data := filepath.Join(dir, ".shoal")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	// Registered before shoal up starts, so it runs after its cleanup.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", data, err, out)
		}
	})
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 1))

	fill := filepath.Join(data, "fill")
	fillDisk(t, fill)

	// The store's file may still have free pages, so a small write can
	// succeed on a full disk; what must never happen is a change that is
	// made but not recorded, or refused without saying why.
	code, out := runShoal(t, bin, dir, "scale", "2")
	scaled := code == 0
	if !scaled && !strings.Contains(out, "no space left on device") {
		t.Errorf("shoal scale 2 on a full disk: exit %d without naming the disk:\n%s", code, out)
	}
	code, out = runShoal(t, bin, dir, "env", "set", "FEATURE=on")
	envSet := code == 0
	if !envSet && !strings.Contains(out, "no space left on device") {
		t.Errorf("shoal env set on a full disk: exit %d without naming the disk:\n%s", code, out)
	}
	// What env list shows is what runs: a refused change is put back.
	if _, list := runShoal(t, bin, dir, "env", "list"); strings.Contains(list, "FEATURE") != envSet {
		t.Errorf("shoal env set exited %d, and env list says:\n%s", code, list)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.js"), []byte("// v2 on a full disk\n"), 0o644); err != nil {
		// The app folder is not on the tmpfs.
		t.Fatal(err)
	}
	// `shoal deploy` builds where it runs: here, into the same full data
	// directory; from another folder, it builds there and the upload
	// fails on the daemon's full disk.
	if code, out := runShoal(t, bin, dir, "deploy"); code == 0 || !strings.Contains(out, "no space left on device") {
		t.Errorf("shoal deploy on a full disk: exit %d, want a failure naming the disk:\n%s", code, out)
	}
	elsewhere := t.TempDir()
	copyApp(t, dir, elsewhere)
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	remote := append(os.Environ(), "SHOAL_ADMIN_URL="+up.adminURL, "SHOAL_TOKEN="+strings.TrimSpace(string(tok)))
	if code, out := runShoalEnv(t, bin, elsewhere, remote, "deploy"); code == 0 || !strings.Contains(out, "no space left on device") {
		t.Errorf("shoal deploy from another folder to a full disk: exit %d, want a failure naming the disk:\n%s", code, out)
	}
	want := 1
	if scaled {
		want = 2
	}
	// A new instance cannot start on a full disk (its log folder); the
	// one that served keeps serving.
	st := waitStatus(t, up.client, "v1 still serving", func(st client.Status) error {
		if st.Release != 1 || st.InService < 1 {
			return fmt.Errorf("group on v%d with %d in service", st.Release, st.InService)
		}
		return nil
	})
	// A release made on the full disk (when the store still had a free
	// page for it) whose instances cannot start is failed at once, or,
	// when the full disk refuses that write too, the write waits, named
	// in status, and is stored once there is room (checked below); it is
	// never left pending silently.
	rels := releaseStatuses(t, up.client)
	for v, s := range rels {
		if s == "pending" && !strings.Contains(st.Events, fmt.Sprintf("release v%d failed", v)) {
			t.Errorf("release v%d is pending on a full disk and status does not say its failure waits: %q (releases %v)", v, st.Events, rels)
		}
	}
	t.Logf("on the full disk: scale exited ok=%v, env set ok=%v; releases %v; store problem %q", scaled, envSet, rels, st.Events)
	if st.Desired != want {
		t.Errorf("desired %d after shoal scale 2 exited %v, want %d", st.Desired, scaled, want)
	}
	if code, body, err := httpGet(testenv.Context(t, 10*time.Second), up.lbURL+"/"); err != nil || code != 200 {
		t.Errorf("the app through the balancer on a full disk: %d %v %.100q", code, err, body)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	// The upload's failure was recorded while the disk was full: it waited
	// in the event log and is written now.
	ctx := testenv.Context(t, 30*time.Second)
	var events []client.Event
	err = testenv.WaitFor(ctx, func() error {
		var err error
		if events, err = up.client.Events(ctx, 0, 1000); err != nil {
			return err
		}
		for _, e := range events {
			if e.Type == "artifact" && strings.Contains(e.Reason, "no space left on device") {
				return nil
			}
		}
		return errors.New("no artifact event naming the full disk")
	})
	if err != nil {
		t.Errorf("after space was freed: %v\nevents: %+v", err, events)
	}
	// Every change that waited is stored now: no release is left pending.
	err = testenv.WaitFor(ctx, func() error {
		rels := releaseStatuses(t, up.client)
		for v, s := range rels {
			if s == "pending" {
				return fmt.Errorf("release v%d still pending (releases %v)", v, rels)
			}
		}
		st, err := up.client.Status(ctx)
		if err != nil {
			return err
		}
		if st.Events != "" {
			return fmt.Errorf("status still says: %s", st.Events)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after space was freed: %v", err)
	}
	if code, out := runShoal(t, bin, dir, "scale", "3"); code != 0 {
		t.Errorf("shoal scale 3 after space was freed: exit %d\n%s", code, out)
	}
	waitStatus(t, up.client, "three serving", onReleaseOnly(1, 3))
	stopUp(t, up)
}

// fillDisk writes zeros to path until the file system is full. It is
// bounded by the tmpfs's size (24 MiB), and a step count for safety.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range 64 {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	t.Fatal(fmt.Errorf("fill %s: 64 MiB written and the disk is not full", path))
}
