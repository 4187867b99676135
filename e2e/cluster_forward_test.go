package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterForwardsWhileTheLeaderMoves runs three `shoal server`s as a
// Raft cluster (the real binary, 127.0.0.1) and one agent, and sends
// calls through a follower while the leader stops answering:
//   - the leader SIGSTOPped (its kernel still accepts connections, it
//     never answers them), an artifact's upload sent at once through a
//     follower, which still knows the stopped server as the leader: the
//     upload is forwarded there, cancelled once the follower knows the
//     lead moved, and sent again to the new leader: it succeeds;
//   - `shoal deploy` through a follower, the leader SIGKILLed while the
//     rollout runs: the CLI loses the leader's stream, follows the deploy
//     on the new leader, which resumes the rollout, and ends with
//     "deploy: v2 serves" and exit status 0.
func TestClusterForwardsWhileTheLeaderMoves(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 2, 4)
	ctx := testenv.Context(t, 12*time.Minute)

	s1, s2, s3 := startCluster(t, ctx, bin)
	all := []*clusterServer{s1, s2, s3}
	newServerAgent(t, s1.FleetURL, "host-a", joinTokenOf(t, bin, clusterEnv(s1), "agent")).start(t, bin)
	d1 := deployVersion(t, bin, app, s1, 1)
	var art bytes.Buffer
	if _, err := client.New(s1.AdminURL, s1.Token).FetchArtifact(ctx, d1, &art); err != nil {
		t.Fatal(err)
	}

	// An upload forwarded to a stopped leader.
	stopped := waitLeader(ctx, t, all...)
	via := otherThan(all, stopped)[0]
	mark := via.Mark()
	if err := stopped.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopped.Signal(syscall.SIGCONT) })
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	start := time.Now()
	err := client.New(via.AdminURL, via.Token).UploadArtifact(upCtx, d1, bytes.NewReader(art.Bytes()), int64(art.Len()))
	cancel()
	if err != nil {
		t.Fatalf("upload through %s with the leader %s stopped: %v", via.id, stopped.id, err)
	}
	t.Logf("upload through %s with the leader %s stopped: done after %s", via.id, stopped.id, time.Since(start).Round(time.Millisecond))
	// Sent again by the follower (the stopped leader never received it)
	// or by the client (it may have: the follower answered 503 with
	// Retry-After, since an upload by digest may be repeated).
	lineCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m, _, err := via.WaitForLineFrom(lineCtx, mark, regexp.MustCompile(`forward to the leader failed.*leader=`+stopped.id+`.*again=(\w+)`))
	cancel()
	if err != nil {
		t.Fatalf("%s did not log the failed forward to the stopped leader %s: %v", via.id, stopped.id, err)
	}
	t.Logf("%s: the forward to the stopped leader failed, sent again by the follower: %s", via.id, m[1])
	if err := stopped.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// A deploy through a follower, the leader killed during its rollout.
	// Each v2 instance boots for 5 s, and the leader dies before the
	// first is in service: 10 s of rollout are left at least, so the
	// stream cannot end before the kill.
	editConfig(t, app, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"] = map[string]any{"BOOT_DELAY_MS": "5000"}
	})
	leader := waitLeader(ctx, t, all...)
	via = otherThan(all, leader)[0]
	deploy := exec.CommandContext(ctx, bin, "deploy")
	deploy.Dir, deploy.Env = app, clusterEnv(via)
	var out strings.Builder
	deploy.Stdout, deploy.Stderr = &out, &out
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	deployed := make(chan error, 1)
	go func() { deployed <- deploy.Wait() }()
	cv := client.New(via.AdminURL, via.Token)
	var tooFar error
	err = testenv.WaitFor(ctx, func() error {
		p, err := cv.Rollout(ctx)
		switch {
		case err != nil:
			return err
		case p == nil || p.Spec.To != 2:
			return errors.New("no rollout to v2 yet")
		case p.Phase.Terminal() || p.Done > 0:
			tooFar = fmt.Errorf("the rollout to v2 went too far (%s, %d of %d) before the kill", p.Phase, p.Done, p.Total)
		}
		return nil
	})
	if err == nil {
		err = tooFar
	}
	if err != nil {
		deploy.Cancel()
		<-deployed
		t.Fatalf("%v\nshoal deploy through %s:\n%s", err, via.id, out.String())
	}
	if err := leader.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("the leader %s killed during the rollout to v2; shoal deploy runs through %s", leader.id, via.id)
	select {
	case err = <-deployed:
	case <-time.After(5 * time.Minute):
		deploy.Cancel()
		err = <-deployed
		t.Fatalf("shoal deploy through %s did not end within 5 minutes of the leader's death:\n%s", via.id, out.String())
	}
	if err != nil || !strings.Contains(out.String(), "following the deploy") || !strings.Contains(out.String(), "deploy: v2 serves") {
		t.Fatalf("shoal deploy through %s, the leader killed during the rollout: %v; want it to follow the deploy to \"deploy: v2 serves\" and exit 0\n%s", via.id, err, out.String())
	}
	t.Logf("shoal deploy through %s:\n%s", via.id, lastLines(out.String(), 4))
}

// otherThan returns the servers of all but s.
func otherThan(all []*clusterServer, s *clusterServer) []*clusterServer {
	var out []*clusterServer
	for _, o := range all {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
