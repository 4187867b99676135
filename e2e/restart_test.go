package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// lastLine returns the last non-empty line of a command's output.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// mustShoal runs a client verb that must succeed and print want.
func mustShoal(t *testing.T, bin, dir, want string, args ...string) {
	t.Helper()
	if code, out := runShoal(t, bin, dir, args...); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("shoal %s: exit %d, want 0 and %q\n%s", strings.Join(args, " "), code, want, out)
	}
}

// releaseStatuses maps each stored release to its status.
func releaseStatuses(t *testing.T, c *client.Client) map[int]string {
	t.Helper()
	rels, err := c.Releases(testenv.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, r := range rels {
		out[r.Version] = string(r.Status)
	}
	return out
}

// hasEvent reports whether an event of type typ whose reason contains
// want is stored.
func hasEvent(t *testing.T, c *client.Client, typ, want string) bool {
	t.Helper()
	evs, err := c.Events(testenv.Context(t, 10*time.Second), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(evs, func(e client.Event) bool { return e.Type == typ && strings.Contains(e.Reason, want) })
}

// TestRestartKeepsWhatRuns stops and starts `shoal up` after env
// overrides (a secret and a plain one), a deploy rolled back and a deploy
// refused by its pre-deploy hook: the restart runs the active release as
// stored, env overrides included, makes no release from the edited
// source, and says that the source differs.
func TestRestartKeepsWhatRuns(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	editYAML(t, dir, func(doc map[string]any) { doc["keep_releases"] = 10 })
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 1))

	mustShoal(t, bin, dir, "v2 serves", "env", "set", "--secret", "API_TOKEN=t0p-s3cret-77")
	mustShoal(t, bin, dir, "v3 serves", "env", "set", "PLAIN_FLAG=on")
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustShoal(t, bin, dir, "deploy: v4 serves", "deploy")
	mustShoal(t, bin, dir, "rollback: v3 serves", "rollback")
	// A deploy that its pre-deploy hook refuses; its source stays.
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("5, refused\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	editYAML(t, dir, func(doc map[string]any) {
		doc["deploy"] = map[string]any{"hooks": map[string]any{"pre_deploy": []any{"echo no migration today; exit 7"}}}
	})
	if code, out := runShoal(t, bin, dir, "deploy"); code == 0 || !strings.Contains(out, "nothing changed") {
		t.Fatalf("deploy refused by its hook: exit %d\n%s", code, out)
	}
	stopUp(t, up)

	up2 := startUp(t, bin, dir)
	if up2.release != "3" {
		t.Errorf("after the restart: release v%s, want v3", up2.release)
	}
	note := `shoal up: the source differs from the active release v3; run "shoal deploy" to release it`
	if _, err := up2.p.WaitForLine(testenv.Context(t, 30*time.Second), regexp.MustCompile(regexp.QuoteMeta(note))); err != nil {
		t.Errorf("no line %q: %v\n%s", note, err, up2.p.Output())
	}
	st := waitStatus(t, up2.client, "v3 serving after the restart", onReleaseOnly(3, 1))
	if got := releaseStatuses(t, up2.client); len(got) != 4 || got[3] != "active" || got[4] != "rolled_back" {
		t.Errorf("releases after the restart: %v; want the 4 made before, v3 active and v4 rolled_back", got)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Instances[0].PID))
	if err != nil {
		t.Fatal(err)
	}
	environ := strings.Split(string(b), "\x00")
	for _, kv := range []string{"API_TOKEN=t0p-s3cret-77", "PLAIN_FLAG=on"} {
		if !slices.Contains(environ, kv) {
			t.Errorf("instance %s (pid %d) runs without %s", st.Instances[0].ID, st.Instances[0].PID, kv)
		}
	}
	code, out := runShoal(t, bin, dir, "env", "list")
	if code != 0 || !regexp.MustCompile(`API_TOKEN\s+\[redacted\]`).MatchString(out) || !regexp.MustCompile(`PLAIN_FLAG\s+on`).MatchString(out) {
		t.Errorf("shoal env list: exit %d\n%s", code, out)
	}
	evs, err := up2.client.Events(testenv.Context(t, 10*time.Second), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, e := range evs {
		text.WriteString(e.Reason + "\n")
	}
	for _, want := range []string{"resuming the active release v3", strings.TrimPrefix(note, "shoal up: ")} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("no event %q in:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "t0p-s3cret-77") {
		t.Error("the secret is in the events")
	}
	stopUp(t, up2)
}

// TestNeverServedIsNoRollbackTarget aborts the deploy of a release that
// never becomes healthy, then checks that it is recorded failed, that
// `shoal rollback` skips it for the last release that served, and the
// exact CLI texts of a deploy with nothing to do, a failed build and a
// rollback to a release that never existed.
func TestNeverServedIsNoRollbackTarget(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	editYAML(t, dir, func(doc map[string]any) { doc["deploy"] = map[string]any{"batch_timeout": "120s"} })
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 1))

	code, out := runShoal(t, bin, dir, "deploy")
	if want := "deploy: nothing to deploy: v1 already runs this artifact and run configuration"; code != 0 || lastLine(out) != want {
		t.Errorf("deploy without change: exit %d, last line %q; want 0 and %q\n%s", code, lastLine(out), want, out)
	}
	editYAML(t, dir, func(doc map[string]any) { doc["build"] = map[string]any{"command": "exit 3"} })
	code, out = runShoal(t, bin, dir, "deploy")
	if want := `shoal deploy: build command "exit 3" exited with status 3`; code != 1 || lastLine(out) != want {
		t.Errorf("deploy with a failing build: exit %d, last line %q; want 1 and %q\n%s", code, lastLine(out), want, out)
	}
	// The build ran where shoal deploy did; its failure is an event of
	// the daemon all the same.
	if !hasEvent(t, up.client, "build", `build failed: build command "exit 3" exited with status 3`) {
		t.Errorf("no build event for the failed build of shoal deploy")
	}
	editYAML(t, dir, func(doc map[string]any) { delete(doc, "build") })

	// v2 never finishes booting; its deploy is aborted.
	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["BOOT_DELAY_MS"] = "600000"
	})
	deploy := exec.Command(bin, "deploy")
	deploy.Dir = dir
	dp := testenv.StartCmd(t, deploy)
	ctx := testenv.Context(t, 60*time.Second)
	err := testenv.WaitFor(ctx, func() error {
		st, err := up.client.Status(ctx)
		if err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.Release == 2 && in.State == api.Starting {
				return nil
			}
		}
		return errors.New("no v2 instance starting yet")
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, dp.Output())
	}
	mustShoal(t, bin, dir, "deploy aborted", "deploy", "--abort")
	if code, err := dp.Wait(ctx); err != nil || code == 0 {
		t.Errorf("aborted shoal deploy: exit %d, %v\n%s", code, err, dp.Output())
	}
	if got := releaseStatuses(t, up.client); got[2] != "failed" {
		t.Errorf("releases after the aborted deploy: %v; want v2 failed (it never served)", got)
	}

	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["BOOT_DELAY_MS"] = "300"
	})
	mustShoal(t, bin, dir, "v3 serves", "env", "set", "FEATURE=on")
	mustShoal(t, bin, dir, "rollback: v1 serves", "rollback")
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 1))

	code, out = runShoal(t, bin, dir, "rollback", "v1")
	if want := "rollback: nothing to deploy: the group already runs v1"; code != 0 || lastLine(out) != want {
		t.Errorf("rollback to the current release: exit %d, last line %q; want 0 and %q\n%s", code, lastLine(out), want, out)
	}
	code, out = runShoal(t, bin, dir, "rollback", "v9")
	want := "shoal rollback: unknown release v9: it does not exist (the newest release is v3); releases that can be rolled back to: v3, v2 (never served)"
	if code != 1 || lastLine(out) != want {
		t.Errorf("rollback v9: exit %d, last line %q; want 1 and %q\n%s", code, lastLine(out), want, out)
	}
	stopUp(t, up)
}
