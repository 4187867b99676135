package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
)

// fleetSource is the demo's groups with a fleet of hosts the test sets.
type fleetSource struct {
	*demo.Source
	mu    sync.Mutex
	fleet *dashboard.Fleet
}

func (s *fleetSource) Fleet(context.Context) (*dashboard.Fleet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fleet, nil
}

func (s *fleetSource) set(f *dashboard.Fleet) {
	s.mu.Lock()
	s.fleet = f
	s.mu.Unlock()
}

// newFleetEnv is newEnv over a fleetSource.
func newFleetEnv(t *testing.T, f *dashboard.Fleet) (*env, *fleetSource) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	src := &fleetSource{Source: demo.New(demo.Options{Seed: 1, StartTicks: 1, Now: c.Now}), fleet: f}
	ui := dashboard.New(dashboard.Options{Token: token, Source: src, Now: c.Now, Interval: 20 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ui.Close()
		srv.Close()
	})
	return &env{t: t, src: src.Source, ui: ui, srv: srv, now: c}, src
}

// TestHostsCard: with a fleet, the overview has a hosts card (each host's
// zone, state, use of capacity, instances, heartbeat) with the ten newest
// host events, and it is kept live; without one (the demo's single
// machine) there is no card.
func TestHostsCard(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var evs []dashboard.Event
	for i := 12; i >= 1; i-- { // newest first
		evs = append(evs, dashboard.Event{Seq: uint64(i), Time: now.Add(-time.Duration(13-i) * time.Second), Kind: dashboard.KindHost,
			Reason: fmt.Sprintf("host event number %d", i)})
	}
	fleet := &dashboard.Fleet{
		Hosts: []dashboard.Host{
			{Name: "h1", Zone: "eu-1a", State: "ready", CPU: 4, UsedCPU: 0.5, Memory: 8 << 30, UsedMemory: 256 << 20, Instances: 1,
				LastHeartbeat: now.Add(-20 * time.Second)},
			{Name: "h2", Zone: "eu-1b", State: "unreachable", Reason: "no heartbeat for 5s", UsedMemory: 0},
		},
		Events: evs,
	}
	e, src := newFleetEnv(t, fleet)
	c, _ := e.login()
	_, body := e.get(c, "/ui/")
	for _, want := range []string{
		`<section class="card hosts" aria-labelledby="hosts-title">`,
		`<h2 id="hosts-title">Hosts <small>2 in the fleet</small></h2>`,
		`<tr data-host="h1" data-state="ready">`,
		`<td data-label="Zone">eu-1a</td>`,
		`0.5 <small>of 4</small>`,
		`256 MiB <small>of 8 GiB</small>`,
		`20 s ago</time>`,
		`<tr data-host="h2" data-state="unreachable">`,
		`<small>no heartbeat for 5s</small>`,
		`0 <small>of any</small>`,
		`<td data-label="Heartbeat">never</td>`,
		`host event number 12`,
		`host event number 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	card := body[strings.Index(body, `id="hosts-title"`):]
	if n := strings.Count(card, `data-kind="host"`); n != 10 {
		t.Errorf("the hosts card lists %d events, want the newest 10", n)
	}
	if strings.Contains(card, "host event number 2<") || strings.Index(card, "number 12") > strings.Index(card, "number 11") {
		t.Error("the hosts card's events are not the newest 10, newest first")
	}
	// Each instance names its host (the demo's: local).
	if !strings.Contains(body, `<td data-label="Host" data-host="local">local</td>`) {
		t.Error("the instances table has no host column")
	}

	// The card is live: a host that comes back is re-rendered.
	r, stop := e.stream(c, "/ui/events?view=overview")
	defer stop()
	r.until(t, "the fleet fragment", func(ev sseEvent) bool { return ev.name == "fragment" && strings.Contains(ev.data, `"id":"fleet"`) })
	back := *fleet
	back.Hosts = []dashboard.Host{fleet.Hosts[0], {Name: "h2", Zone: "eu-1b", State: "ready", LastHeartbeat: now}}
	src.set(&back)
	ev := r.until(t, "h2 ready", func(ev sseEvent) bool {
		return ev.name == "fragment" && strings.Contains(ev.data, `"id":"fleet"`) && strings.Contains(ev.data, `data-host=\"h2\" data-state=\"ready\"`)
	})
	var frag struct{ ID, HTML string }
	if err := json.Unmarshal([]byte(ev.data), &frag); err != nil || !strings.Contains(frag.HTML, "just now") {
		t.Errorf("fleet fragment %v: %.400s", err, frag.HTML)
	}

	// Hosts with regions are grouped under a row per region, regions by
	// name, hosts without one last.
	regions := *fleet
	regions.Hosts = []dashboard.Host{{Name: "a1", Region: "sfo3", State: "ready"}, {Name: "b1", Region: "nyc1", State: "ready"},
		{Name: "c1", State: "ready"}, {Name: "d1", Region: "nyc1", State: "ready"}}
	src.set(&regions)
	_, body = e.get(c, "/ui/")
	order := []string{`data-region="nyc1"`, `data-host="b1"`, `data-host="d1"`, `data-region="sfo3"`, `data-host="a1"`, `data-region=""`, `data-host="c1"`}
	last := -1
	for _, w := range order {
		i := strings.Index(body, w)
		if i <= last {
			t.Errorf("hosts card: %q missing or out of order (want %v)", w, order)
			break
		}
		last = i
	}
	if !strings.Contains(body, `Region nyc1 <small>2 hosts</small>`) {
		t.Error("no row for region nyc1 with its count")
	}

	// No fleet: no card.
	src.set(nil)
	if _, body := e.get(c, "/ui/"); strings.Contains(body, "hosts-title") {
		t.Error("a hosts card without a fleet")
	}
}
