package fleet_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/testenv"
)

const mib = 1 << 20

// TestSpreadLoseAndFenceAHost runs six instances of an app over three real
// agents in two zones, loses a host (its listener closed: it runs on, out
// of reach), checks that its instances are reported ended with the reason
// and replaced elsewhere, brings it back and checks that its stale
// instances are stopped before it takes instances again, then adopts what
// runs.
func TestSpreadLoseAndFenceAHost(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := newServer(t)
	// Zone a has two hosts, zone b one that fits two instances of 64 MiB.
	h1 := s.join(t, "h1", "a", 4, 256*mib)
	h2 := s.join(t, "h2", "a", 4, 256*mib)
	h3 := s.join(t, "h3", "b", 4, 128*mib)
	waitState(t, s.fleet, api.HostReady, "h1", "h2", "h3")

	web := s.fleet.Host("web")
	where := map[string]string{} // instance -> host
	for i := range 6 {
		id := fmt.Sprintf("web-%d", i)
		run, err := web.Start(ctx, s.spec(t, "web", id, 0.5, 64*mib))
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		for _, h := range []*host{h1, h2, h3} {
			if slices.Contains(h.running(), id) {
				where[id] = h.name
			}
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			body, err := get(ctx, http.DefaultClient, "http://"+run.Addr+"/")
			if err == nil && !strings.Contains(body, id) {
				err = fmt.Errorf("instance %s at %s answers %q", id, run.Addr, body)
			}
			return err
		})
	}
	// Zones first (a, b, a, b), then zone b is full and zone a takes the
	// rest, host by host: 2/2/2.
	want := map[string]string{"web-0": "h1", "web-1": "h3", "web-2": "h2", "web-3": "h3", "web-4": "h1", "web-5": "h2"}
	if fmt.Sprint(where) != fmt.Sprint(want) {
		t.Fatalf("placed %v, want %v", where, want)
	}
	if st := status(s.fleet, "h3"); st.Instances != 2 || st.UsedMemoryBytes != 128*mib || st.UsedCPU != 1 {
		t.Fatalf("h3's status: %+v", st)
	}

	// Another app's instance: its exits never reach web's channel.
	apiHost := s.fleet.Host("api")
	if _, err := apiHost.Start(ctx, s.spec(t, "api", "api-0", 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := apiHost.Stop(ctx, "api-0"); err != nil {
		t.Fatal(err)
	}
	if e := nextExit(t, ctx, apiHost.Exits()); e.ID != "api-0" || !e.Stopped {
		t.Fatalf("api's exit: %+v", e)
	}

	// h3 falls off the network.
	lost := time.Now()
	h3.unplug()
	ended := map[string]string{}
	for range 2 {
		e := nextExit(t, ctx, web.Exits())
		ended[e.ID] = e.Reason
	}
	if took := time.Since(lost); took > lostAfter+5*time.Second {
		t.Errorf("h3's instances reported ended after %s, LostAfter is %s", took, lostAfter)
	}
	for _, id := range []string{"web-1", "web-3"} {
		if !strings.HasPrefix(ended[id], "host h3 unreachable for ") {
			t.Errorf("exit of %s: reason %q, want the host's loss", id, ended[id])
		}
	}
	if st := status(s.fleet, "h3"); st.State != api.HostUnreachable || st.Generation != 1 || st.Instances != 0 {
		t.Fatalf("h3 after the loss: %+v", st)
	}
	if err := s.eventWith("host h3 unreachable for", "2 instances reported ended"); err != nil {
		t.Error(err)
	}
	if got := h3.running(); !slices.Equal(got, []string{"web-1", "web-3"}) {
		t.Fatalf("h3 runs %v; its instances should run on out of reach", got)
	}

	// The controller's replacements go to zone a: zone b has no ready host.
	for _, id := range []string{"web-6", "web-7"} {
		if _, err := web.Start(ctx, s.spec(t, "web", id, 0.5, 64*mib)); err != nil {
			t.Fatalf("start replacement %s: %v", id, err)
		}
	}
	if a, b := len(h1.running()), len(h2.running()); a != 3 || b != 3 {
		t.Fatalf("after the replacements h1 runs %d and h2 %d instances, want 3 and 3", a, b)
	}

	// h3 comes back: its stale instances are stopped, then it is ready.
	h3.plug()
	waitState(t, s.fleet, api.HostReady, "h3")
	if got := h3.running(); len(got) != 0 {
		t.Fatalf("h3 is ready again and still runs %v", got)
	}
	if n := s.countEvents("stopped on host h3 (generation 0, host at 1)"); n != 2 {
		t.Errorf("%d events of stale instances stopped, want 2", n)
	}
	if err := s.eventWith("host h3 back (generation 1): 2 stale instances stopped"); err != nil {
		t.Error(err)
	}
	select {
	case e := <-web.Exits():
		t.Fatalf("an exit after the fence (stale instances are reported once): %+v", e)
	default:
	}

	adopted, err := s.fleet.Adopt(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range adopted {
		ids = append(ids, in.ID+"@"+in.Host)
		if in.Addr == "" || in.PID == 0 || in.Memory != 64*mib || in.CPU != 0.5 || in.Release != 1 {
			t.Errorf("adopted %+v", in)
		}
	}
	wantIDs := []string{"web-0@h1", "web-2@h2", "web-4@h1", "web-5@h2", "web-6@h1", "web-7@h2"}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("adopted %v, want %v", ids, wantIDs)
	}
}

// TestHelloDrainAndNoCapacity checks the hello endpoint's guard and
// checks, draining, and a start that no host can take.
func TestHelloDrainAndNoCapacity(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s := newServer(t)
	h1 := s.join(t, "h1", "a", 1, 128*mib)
	waitState(t, s.fleet, api.HostReady, "h1")

	// No client certificate: 401, and nothing registered.
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(anon.CloseIdleConnections)
	if status, body := post(t, anon, s.url+"/v1/hello", api.AgentHello{URL: "https://127.0.0.1:1", Epoch: "x"}); status != http.StatusUnauthorized {
		t.Fatalf("hello without a certificate: %d %s", status, body)
	}
	// A bad body names every problem; the record is unchanged.
	status400, body := post(t, h1.client, s.url+"/v1/hello", api.AgentHello{URL: "http://127.0.0.1", CPU: -1, Epoch: "", Region: "a b"})
	if status400 != http.StatusBadRequest || !strings.Contains(body, "hello from h1") || !strings.Contains(body, `region \"a b\"`) ||
		!strings.Contains(body, "want https://host:port") || !strings.Contains(body, "cpu -1") || !strings.Contains(body, "epoch") {
		t.Fatalf("bad hello: %d %s", status400, body)
	}
	if got := s.fleet.Status(); len(got) != 1 || got[0].Name != "h1" || got[0].Zone != "a" || got[0].MemoryBytes != 128*mib {
		t.Fatalf("status: %+v", got)
	}

	app := s.fleet.Host("web")
	_, err := app.Start(ctx, s.spec(t, "web", "big-0", 0.5, 512*mib))
	if !errors.Is(err, controller.ErrNoCapacity) || !strings.HasPrefix(err.Error(), "no capacity: an instance of web (0.5 CPU, 512 MiB): h1: 128 MiB free") {
		t.Fatalf("start beyond capacity: %v", err)
	}

	if err := s.fleet.Drain("h1"); err != nil {
		t.Fatal(err)
	}
	if st := status(s.fleet, "h1"); st.State != api.HostDraining {
		t.Fatalf("after drain: %+v", st)
	}
	_, err = app.Start(ctx, s.spec(t, "web", "web-0", 0, 0))
	if !errors.Is(err, controller.ErrNoCapacity) || !strings.Contains(err.Error(), "h1: draining") {
		t.Fatalf("start on a draining fleet: %v", err)
	}
	// The drain is stored: a new fleet over the same store keeps it.
	recs, err := s.store.Hosts().List()
	if err != nil || len(recs) != 1 || !recs[0].Draining || recs[0].URL != "https://"+h1.addr {
		t.Fatalf("stored hosts: %+v, %v", recs, err)
	}
	if err := s.eventWith("host h1 draining"); err != nil {
		t.Error(err)
	}
	if err := s.fleet.Undrain("h1"); err != nil {
		t.Fatal(err)
	}
	run, err := app.Start(ctx, s.spec(t, "web", "web-0", 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Logs and stats go to the instance's host.
	testenv.Eventually(t, 10*time.Second, func() error {
		var b strings.Builder
		if err := app.Logs(ctx, "web-0", 10, false, &b); err != nil {
			return err
		}
		if !strings.Contains(b.String(), "serving v1") {
			return fmt.Errorf("logs %q", b.String())
		}
		return nil
	})
	if st, err := app.Stats("web-0"); err != nil || st.RSSBytes == 0 {
		t.Fatalf("stats: %+v, %v", st, err)
	}
	if err := s.fleet.Drain("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("drain of an unknown host: %v", err)
	}
	_ = run
}
