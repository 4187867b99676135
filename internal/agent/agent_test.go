package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain doubles as the instance program (agenttest.MaybeServe) and fails
// the run when a goroutine outlives the tests.
func TestMain(m *testing.M) {
	agenttest.MaybeServe()
	goleak.VerifyTestMain(m)
}

func launch(t *testing.T, id, digest string) api.LaunchSpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return api.LaunchSpec{ID: id, App: "web", Release: 3, Digest: digest, Command: exe,
		Env: []string{agenttest.ServeEnv + "=1", "HOST=0.0.0.0"}, StopTimeoutMS: 5000,
		Labels: map[string]string{"team": "blue"}}
}

// get asks the instance at addr for its report.
func get(ctx context.Context, addr string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/hello", nil)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]string
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// lockedBuffer collects a log stream written by another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestStartListLogsStatsStop(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	spec := launch(t, "web-1", f.Digest)
	const secret = "hunter2-hunter2"
	spec.Env = append(spec.Env, "SECRET="+secret)
	spec.Secrets = []string{secret}
	info, err := f.Client.Start(ctx, 1, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Addr, "127.0.0.1:") || info.PID <= 0 || info.App != "web" || info.Release != 3 ||
		info.Digest != f.Digest || info.Labels["team"] != "blue" || info.Started.IsZero() {
		t.Fatalf("start answered %+v", info)
	}
	var report map[string]string
	testenv.Eventually(t, 20*time.Second, func() (err error) {
		report, err = get(ctx, info.Addr)
		return err
	})
	// The agent's bind address wins over the spec's, and the instance runs
	// in the unpacked artifact.
	if report["host"] != "127.0.0.1" || report["version"] != "v1" || report["id"] != "web-1" {
		t.Errorf("instance reports %v", report)
	}

	again, err := f.Client.Start(ctx, 1, spec)
	if err != nil || again.PID != info.PID || again.Addr != info.Addr {
		t.Fatalf("retried start = %+v, %v; want the running instance %+v", again, err, info)
	}
	other := launch(t, "web-1", f.Digest)
	other.Command += " --other"
	if _, err := f.Client.Start(ctx, 1, other); !errors.Is(err, agentclient.ErrConflict) {
		t.Errorf("start of a running id with another command: %v; want ErrConflict", err)
	}

	list, err := f.Client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Instances) != 1 || list.Instances[0].ID != "web-1" || list.Instances[0].PID != info.PID ||
		list.Instances[0].Digest != f.Digest || list.Epoch != f.Agent.Epoch() || list.ExitSeq != 0 {
		t.Fatalf("list = %+v", list)
	}

	st, err := f.Client.Stats(ctx, "web-1")
	if err != nil || st.RSSBytes <= 0 || st.Processes != 1 || st.CPUSeconds < 0 {
		t.Errorf("stats = %+v, %v", st, err)
	}
	if _, err := f.Client.Stats(ctx, "nope"); !errors.Is(err, agentclient.ErrNotFound) || !strings.Contains(err.Error(), f.Client.Addr()) {
		t.Errorf("stats of an unknown instance: %v; want ErrNotFound naming %s", err, f.Client.Addr())
	}
	h, err := f.Client.Host(ctx)
	if err != nil || h.Name != "test-host" || h.Addr != "127.0.0.1" || h.CPUs < 1 || h.MemoryBytes <= 0 ||
		h.Term != 1 || h.Instances != 1 || h.Epoch != list.Epoch {
		t.Errorf("host = %+v, %v", h, err)
	}

	// The tail, then the lines that follow, until the instance has ended.
	var tail bytes.Buffer
	testenv.Eventually(t, 10*time.Second, func() error {
		tail.Reset()
		if err := f.Client.Logs(ctx, "web-1", 10, false, &tail); err != nil {
			return err
		}
		if !strings.Contains(tail.String(), "serving v1") {
			return fmt.Errorf("tail is %q", tail.String())
		}
		return nil
	})
	if !strings.Contains(tail.String(), "secret ") || strings.Contains(tail.String(), secret) {
		t.Errorf("tail %q; want the secret line with its value hidden", tail.String())
	}
	var follow lockedBuffer
	followed := make(chan error, 1)
	go func() { followed <- f.Client.Logs(ctx, "web-1", 1, true, &follow) }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := get(ctx, info.Addr); err != nil {
			return err
		}
		if !strings.Contains(follow.String(), "request /hello") {
			return fmt.Errorf("followed %q", follow.String())
		}
		return nil
	})
	if err := f.Client.Logs(ctx, "nope", 10, false, &tail); !errors.Is(err, agentclient.ErrNotFound) {
		t.Errorf("logs of an unknown instance: %v; want ErrNotFound", err)
	}

	if err := f.Client.Stop(ctx, 1, "web-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("following the logs: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the log stream did not end with the instance")
	}
	if !strings.HasSuffix(follow.String(), "bye\n") {
		t.Errorf("followed log ends %q; want the instance's last line", follow.String())
	}
	if err := f.Client.Stop(ctx, 1, "web-1"); err != nil {
		t.Errorf("stop of an ended instance: %v; want nil", err)
	}
	list, err = f.Client.List(ctx)
	if err != nil || len(list.Instances) != 0 || list.ExitSeq != 1 {
		t.Fatalf("list after stop = %+v, %v", list, err)
	}
	exits, err := f.Client.FollowExits("", 0).Next(ctx)
	if err != nil || len(exits) != 1 || exits[0].ID != "web-1" || !exits[0].Stopped || exits[0].Code != 0 || exits[0].Seq != 1 {
		t.Fatalf("exits = %+v, %v; want web-1 stopped with code 0", exits, err)
	}
}

// TestKilledInstanceExitsOnce: an instance killed behind the agent's back
// is reported once, with its signal; the next exit is the next instance's.
func TestKilledInstanceExitsOnce(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	fl := f.Client.FollowExits("", 0)
	info, err := f.Client.Start(ctx, 1, launch(t, "web-1", f.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(info.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exits, err := fl.Next(ctx)
	if err != nil || len(exits) != 1 {
		t.Fatalf("exits = %+v, %v", exits, err)
	}
	if x := exits[0]; x.ID != "web-1" || x.Signal != "SIGKILL" || x.Code != -1 || x.Stopped || x.Seq != 1 {
		t.Errorf("exit = %+v; want web-1 killed by SIGKILL, not stopped", x)
	}
	if _, err := f.Client.Start(ctx, 1, launch(t, "web-2", f.Digest)); err != nil {
		t.Fatal(err)
	}
	if err := f.Client.Stop(ctx, 1, "web-2"); err != nil {
		t.Fatal(err)
	}
	exits, err = fl.Next(ctx)
	if err != nil || len(exits) != 1 || exits[0].ID != "web-2" || exits[0].Seq != 2 {
		t.Fatalf("next exits = %+v, %v; want only web-2's", exits, err)
	}
}

// TestMismatchedArtifactRefused: bytes that are another artifact than the
// digest asked for are refused, nothing of them is kept and nothing runs.
func TestMismatchedArtifactRefused(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	want, _ := agenttest.Artifact(t, map[string]string{"version.txt": "v2\n"})
	evil, evilBytes := agenttest.Artifact(t, map[string]string{"version.txt": "evil\n"})
	f.Artifacts.Set(want, evilBytes)
	_, err := f.Client.Start(ctx, 1, launch(t, "web-1", want))
	var se *agentclient.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadGateway || !strings.Contains(err.Error(), "mismatch") ||
		!strings.Contains(err.Error(), evil) {
		t.Fatalf("start with mismatched bytes: %v; want 502 naming the digest sent", err)
	}
	t.Logf("mismatch: %v", err)
	list, err := f.Client.List(ctx)
	if err != nil || len(list.Instances) != 0 {
		t.Errorf("list = %+v, %v; want nothing running", list, err)
	}
	stored, err := f.Agent.Store.List()
	if err != nil || len(stored) != 0 {
		t.Errorf("stored artifacts = %+v, %v; want none", stored, err)
	}
	for _, dir := range []string{filepath.Join(f.Agent.Dir, "agent", "tmp"), filepath.Join(f.Agent.Dir, "artifacts", "tmp")} {
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Errorf("%s holds %v (%v); want it empty", dir, ents, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.Agent.Dir, "agent", "releases")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("releases/ exists (%v); nothing should have been unpacked", err)
	}
	// Bytes that are no artifact at all are refused too.
	f.Artifacts.Set(want, []byte("not gzip"))
	if _, err := f.Client.Start(ctx, 1, launch(t, "web-1", want)); !errors.As(err, &se) || se.Status != http.StatusBadGateway {
		t.Errorf("start with garbage bytes: %v; want 502", err)
	}
	// A digest the server does not have.
	missing, _ := agenttest.Artifact(t, map[string]string{"x": "y"})
	_, err = f.Client.Start(ctx, 1, launch(t, "web-1", missing))
	if !errors.As(err, &se) || se.Status != http.StatusBadGateway || !strings.Contains(err.Error(), "404") {
		t.Errorf("start of an artifact the server lacks: %v; want 502 with the server's 404", err)
	}
	t.Logf("missing: %v", err)
}

// TestConcurrentStartsFetchOnce: starts of one digest fetch it once; starts
// of one id run one process.
func TestConcurrentStartsFetchOnce(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	release := f.Artifacts.Hold()
	defer release()
	ids := []string{"web-1", "web-2", "web-3", "web-1", "web-2"}
	type result struct {
		info api.InstanceInfo
		err  error
	}
	results := make([]result, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			info, err := f.Client.Start(ctx, 1, launch(t, id, f.Digest))
			results[i] = result{info, err}
		})
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := f.Artifacts.Fetches(f.Digest); n != 1 {
			return fmt.Errorf("%d fetches", n)
		}
		return nil
	})
	release()
	wg.Wait()
	pids := map[string]int{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("start %s: %v", ids[i], r.err)
		}
		if p, ok := pids[r.info.ID]; ok && p != r.info.PID {
			t.Errorf("%s started twice: pids %d and %d", r.info.ID, p, r.info.PID)
		}
		pids[r.info.ID] = r.info.PID
	}
	if n := f.Artifacts.Fetches(f.Digest); n != 1 {
		t.Errorf("the artifact was fetched %d times; want once", n)
	}
	if list, err := f.Client.List(ctx); err != nil || len(list.Instances) != 3 {
		t.Errorf("list = %+v, %v; want 3 instances", list, err)
	}
}

// TestTermFence: an older term is refused and changes nothing; a newer one
// is recorded, and survives a restart of the agent.
func TestTermFence(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	if _, err := f.Client.Start(ctx, 5, launch(t, "web-1", f.Digest)); err != nil {
		t.Fatal(err)
	}
	err := f.Client.Stop(ctx, 4, "web-1")
	var se *agentclient.StatusError
	if !errors.Is(err, agentclient.ErrStaleTerm) || !errors.As(err, &se) || se.Status != http.StatusConflict || se.Term != 5 ||
		!strings.Contains(err.Error(), "term 4") || !strings.Contains(err.Error(), "term 5") {
		t.Fatalf("stop with an older term: %v; want a 409 naming terms 4 and 5", err)
	}
	t.Logf("stale: %v", err)
	if _, err := f.Client.Start(ctx, 3, launch(t, "web-2", f.Digest)); !errors.Is(err, agentclient.ErrStaleTerm) {
		t.Errorf("start with an older term: %v; want ErrStaleTerm", err)
	}
	if list, err := f.Client.List(ctx); err != nil || len(list.Instances) != 1 {
		t.Fatalf("list = %+v, %v; want web-1 still running and no web-2", list, err)
	}
	if err := f.Client.Stop(ctx, 0, "web-1"); !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(err.Error(), api.TermHeader) {
		t.Errorf("stop without a term: %v; want 400 naming %s", err, api.TermHeader)
	}
	if err := f.Client.Stop(ctx, 7, "web-1"); err != nil {
		t.Fatalf("stop with a newer term: %v", err)
	}

	// Restart the agent over the same files.
	f.Agent.Close()
	ag := agenttest.Start(t, f.CA, f.Artifacts, agenttest.Options{Dir: f.Agent.Dir})
	c := ag.Client()
	if h, err := c.Host(ctx); err != nil || h.Term != 7 {
		t.Fatalf("host after restart = %+v, %v; want term 7", h, err)
	}
	if _, err := c.Start(ctx, 6, launch(t, "web-3", f.Digest)); !errors.Is(err, agentclient.ErrStaleTerm) {
		t.Errorf("start with term 6 after a restart at term 7: %v; want ErrStaleTerm", err)
	}
	if _, err := c.Start(ctx, 7, launch(t, "web-3", f.Digest)); err != nil {
		t.Errorf("start with the recorded term: %v", err)
	}
	if f.Artifacts.Fetches(f.Digest) != 1 {
		t.Errorf("fetched %d times; the restarted agent should use its stored artifact", f.Artifacts.Fetches(f.Digest))
	}
}

// TestClientCertificateRequired: without a certificate of the fleet's CA,
// nothing is served.
func TestClientCertificateRequired(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, 30*time.Second)
	c := agentclient.New(f.Agent.URL, f.CA.NoCertTLS())
	defer c.HTTP.CloseIdleConnections()
	if _, err := c.Host(ctx); err == nil || !strings.Contains(err.Error(), f.Client.Addr()) {
		t.Errorf("host without a client certificate: %v; want an error naming %s", err, f.Client.Addr())
	}
	stranger := agenttest.NewCA(t)
	tc := stranger.ClientTLS(t)
	tc.RootCAs = f.CA.NoCertTLS().RootCAs
	c2 := agentclient.New(f.Agent.URL, tc)
	defer c2.HTTP.CloseIdleConnections()
	if _, err := c2.Host(ctx); err == nil {
		t.Error("host with a certificate of another CA answered")
	}
	// Served without TLS (a wrong composition), the handler still refuses.
	rec := httptest.NewRecorder()
	f.Agent.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/host", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("plain request answered %d; want 401", rec.Code)
	}
}

// TestStopBeforeItsStartArrives: a stop that reaches the agent before the
// start of the same instance (the start's body still on its way, as a
// start whose answer the fleet gave up on under load) leaves no instance
// running: the late start is refused with 409 and the agent runs nothing.
func TestStopBeforeItsStartArrives(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	body, err := json.Marshal(launch(t, "web-late", f.Digest))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.Agent.URL+"/v1/instances", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.TermHeader, "1")
	tr := &http.Transport{TLSClientConfig: f.CA.ClientTLS(t)}
	defer tr.CloseIdleConnections()
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	// The start cannot be decoded, so not begun, until the rest is sent.
	if err := f.Client.Stop(ctx, 1, "web-late"); err != nil {
		t.Fatalf("stop of an instance not started yet: %v", err)
	}
	if _, err := pw.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	a := <-answered
	if a.err != nil || a.status != http.StatusConflict || !strings.Contains(a.body, "stopped before this start arrived") {
		t.Fatalf("the late start: %d %q, %v; want 409 saying it was stopped before", a.status, a.body, a.err)
	}
	if list, err := f.Client.List(ctx); err != nil || len(list.Instances) != 0 {
		t.Fatalf("list = %+v, %v; want no instance running", list, err)
	}
}
