package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// onReleaseOnly waits until n instances serve, all of release v, and the
// group's release is v.
func onReleaseOnly(v, n int) func(client.Status) error {
	return func(st client.Status) error {
		if err := inService(n)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.Release != v {
				return fmt.Errorf("instance %s runs v%d", in.ID, in.Release)
			}
		}
		if st.Release != v {
			return fmt.Errorf("group on v%d, want v%d", st.Release, v)
		}
		return nil
	}
}

// TestDeployResumesAfterKill kills `shoal up` with SIGKILL while a deploy
// of a slow-booting release is in progress, starts it again, and checks
// that it resumes the deploy and converges on the new release, with no
// process of the first run left.
func TestDeployResumesAfterKill(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 2, 4)
	editYAML(t, dir, func(doc map[string]any) {
		doc["deploy"] = map[string]any{"batch_timeout": "30s", "max_surge": "1"}
	})
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 2))

	// v2 boots slowly, so the deploy is still in progress when shoal dies.
	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["BOOT_DELAY_MS"] = "2500"
	})
	deploy := exec.Command(bin, "deploy")
	deploy.Dir = dir
	dp := testenv.StartCmd(t, deploy)

	ctx := testenv.Context(t, 60*time.Second)
	var pids []int
	err := testenv.WaitFor(ctx, func() error {
		st, err := up.client.Status(ctx)
		if err != nil {
			return err
		}
		pids = pids[:0]
		booting := false
		for _, in := range st.Instances {
			if in.PID > 0 {
				pids = append(pids, in.PID)
			}
			booting = booting || (in.Release == 2 && in.State == api.Starting && in.PID > 0)
		}
		if !booting {
			return errors.New("no v2 instance booting yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, dp.Output())
	}
	if err := up.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := up.p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := dp.Wait(ctx); err != nil || code == 0 {
		t.Errorf("shoal deploy whose shoal up was killed: exit %d, %v\n%s", code, err, dp.Output())
	}

	up2 := startUp(t, bin, dir)
	st := waitStatus(t, up2.client, "v2 serving after the restart", onReleaseOnly(2, 2))
	if err := waitGone(ctx, pids); err != nil {
		t.Errorf("processes of the killed run: %v", err)
	}
	for _, in := range st.Instances {
		for _, pid := range pids {
			if in.PID == pid {
				t.Errorf("instance %s has the pid %d of the killed run", in.ID, pid)
			}
		}
	}
	if p, err := up2.client.Rollout(ctx); err != nil || p != nil {
		t.Errorf("rollout after convergence: %+v, %v; want none", p, err)
	}
	rels, err := up2.client.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]string{}
	for _, r := range rels {
		statuses[r.Version] = string(r.Status)
	}
	if len(rels) != 2 || statuses[2] != "active" || statuses[1] != "superseded" {
		t.Errorf("releases after the resumed deploy: %v, want v2 active and v1 superseded, nothing else", statuses)
	}
	evs, err := up2.client.Events(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, e := range evs {
		text.WriteString(e.Reason + "\n")
	}
	if !strings.Contains(text.String(), "resuming deploy of v2 interrupted by a restart") {
		t.Errorf("no resume event in:\n%s", text.String())
	}
	// The deploy lock is free again: a new deploy is judged on its merits.
	if code, out := runShoal(t, bin, dir, "deploy"); code != 0 || !strings.Contains(out, "nothing to deploy") {
		t.Errorf("deploy after the resumed one: exit %d\n%s", code, out)
	}
	if err := up2.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := up2.p.Wait(context.WithoutCancel(ctx)); err != nil || code != 0 {
		t.Errorf("shoal up after SIGTERM: exit %d, %v", code, err)
	}
}
