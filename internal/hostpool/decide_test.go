package hostpool_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/hostpool"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const gib = 1 << 30

func lim() hostpool.Limits {
	return hostpool.Limits{Min: 1, Max: 4, EmptyAfter: time.Minute, JoinDeadline: 5 * time.Minute, Regions: []string{"nyc1", "sfo3"}}
}

func ready(name, region string, instances int) hostpool.Observed {
	return hostpool.Observed{Machine: hostpool.Machine{ID: name, Name: name, Region: region, Created: t0.Add(-time.Hour)},
		Joined: true, State: api.HostReady, Instances: instances, CPU: 2, Memory: 4 * gib}
}

func demand(n int, cpu float64, mem int64) []hostpool.Demand {
	out := make([]hostpool.Demand, n)
	for i := range out {
		out[i] = hostpool.Demand{App: "web", CPU: cpu, Memory: mem}
	}
	return out
}

func names(ms []hostpool.NewMachine) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+"@"+m.Region)
	}
	return strings.Join(s, " ")
}

func TestDecide(t *testing.T) {
	booting := hostpool.Observed{Machine: hostpool.Machine{ID: "9", Name: "web-9", Region: "sfo3", Created: t0.Add(-time.Minute)}}
	cases := []struct {
		name                 string
		in                   hostpool.Input
		create, drain, destr string
		reason               []string
	}{
		{name: "at rest: nothing", in: hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 2)}, NextSeq: 2}},
		{name: "below min: up to min", in: hostpool.Input{NextSeq: 1},
			create: "web-1@nyc1", reason: []string{"0 machines, min 1"}},
		{name: "pending packed onto hosts of the joined size",
			in: hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 4)}, Pending: demand(7, 1, gib), NextSeq: 2},
			// 7 x (1 CPU, 1 GiB) on 2 CPU hosts: 4 hosts, capped to 3; spread over regions.
			create: "web-2@sfo3 web-3@nyc1 web-4@sfo3",
			reason: []string{"7 instances wait for capacity (7 CPU, 7168 MiB), 2 CPU, 4096 MiB per host; 0 hosts booting", "capped by max 4"},
		},
		{name: "booting hosts count as capacity on the way",
			in:     hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 4), booting}, Pending: demand(4, 1, gib), NextSeq: 10},
			create: "web-10@nyc1", reason: []string{"1 hosts booting"}},
		{name: "waiting for a retry on a host ready since: no host added, none removed",
			in: hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 4), withEmpty(ready("web-2", "sfo3", 0), time.Hour)},
				Pending: []hostpool.Demand{{App: "web", CPU: 1, Retry: true}}, NextSeq: 3}},
		{name: "never above max",
			in: hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 2), ready("web-2", "sfo3", 2), ready("web-3", "nyc1", 2), ready("web-4", "sfo3", 2)},
				Pending: demand(3, 1, 0), NextSeq: 5}},
		{name: "unknown capacity: one host at a time",
			in:     hostpool.Input{Pending: demand(3, 0, 0), NextSeq: 1},
			create: "web-1@nyc1"},
		{name: "empty long enough: drained, newest first; not too soon",
			in: hostpool.Input{Machines: []hostpool.Observed{
				withEmpty(ready("web-1", "nyc1", 0), 2*time.Minute), withEmpty(ready("web-2", "sfo3", 0), 2*time.Minute), withEmpty(ready("web-3", "nyc1", 0), 10*time.Second)}, NextSeq: 4},
			drain: "web-2 web-1", reason: []string{"web-2 empty for 2m0s (empty_after 1m0s)"}},
		{name: "never below min",
			in:    hostpool.Input{Machines: []hostpool.Observed{withEmpty(ready("web-1", "nyc1", 0), time.Hour), state(ready("web-2", "sfo3", 0), api.HostDraining), withEmpty(ready("web-3", "nyc1", 0), time.Hour)}, NextSeq: 4},
			drain: "web-3", destr: "web-2"},
		{name: "drained and empty: destroyed",
			in:    hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 1), state(ready("web-2", "sfo3", 0), api.HostDraining)}, NextSeq: 3},
			destr: "web-2", reason: []string{"web-2 drained and empty"}},
		{name: "draining with instances: waits",
			in: hostpool.Input{Machines: []hostpool.Observed{ready("web-1", "nyc1", 1), state(ready("web-2", "sfo3", 1), api.HostDraining)}, NextSeq: 3}},
		{name: "no scale-in while instances wait",
			in: hostpool.Input{Machines: []hostpool.Observed{withEmpty(ready("web-1", "nyc1", 0), time.Hour), withEmpty(ready("web-2", "nyc1", 0), time.Hour), booting},
				Pending: demand(1, 1, gib), NextSeq: 10}},
		{name: "never joined: destroyed and replaced",
			in: hostpool.Input{Machines: []hostpool.Observed{{Machine: hostpool.Machine{ID: "7", Name: "web-7", Region: "nyc1", Created: t0.Add(-6 * time.Minute)}}},
				NextSeq: 8},
			destr: "web-7", create: "web-8@nyc1", reason: []string{"web-7 did not join within 5m0s (made 6m0s ago)"}},
		{name: "unreachable past the deadline: destroyed and replaced",
			in:    hostpool.Input{Machines: []hostpool.Observed{lost(ready("web-1", "nyc1", 0), 6*time.Minute)}, NextSeq: 2},
			destr: "web-1", create: "web-2@nyc1", reason: []string{"web-1 unreachable for 6m0s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Pool, c.in.Now, c.in.Limits = "web", t0, lim()
			d := hostpool.Decide(c.in)
			if got := names(d.Create); got != c.create {
				t.Errorf("create %q, want %q", got, c.create)
			}
			if got := strings.Join(d.Drain, " "); got != c.drain {
				t.Errorf("drain %q, want %q", got, c.drain)
			}
			var destr []string
			for _, x := range d.Destroy {
				destr = append(destr, x.Name)
			}
			if got := strings.Join(destr, " "); got != c.destr {
				t.Errorf("destroy %q, want %q", got, c.destr)
			}
			if (c.create+c.drain+c.destr == "") != (d.Reason == "") {
				t.Errorf("reason %q for a decision of %q %q %q", d.Reason, c.create, c.drain, c.destr)
			}
			for _, r := range c.reason {
				if !strings.Contains(d.Reason, r) {
					t.Errorf("reason %q lacks %q", d.Reason, r)
				}
			}
		})
	}
}

func withEmpty(o hostpool.Observed, d time.Duration) hostpool.Observed { o.EmptyFor = d; return o }

func state(o hostpool.Observed, s api.HostState) hostpool.Observed { o.State = s; return o }

func lost(o hostpool.Observed, d time.Duration) hostpool.Observed {
	o.State, o.UnreachableFor = api.HostUnreachable, d
	return o
}

func TestNames(t *testing.T) {
	if got := hostpool.Tag("web"); got != "shoal-pool:web" {
		t.Errorf("Tag = %q", got)
	}
	if got := hostpool.MachineName("web", 12); got != "web-12" {
		t.Errorf("MachineName = %q", got)
	}
	for name, want := range map[string]int{"web-1": 1, "web-12": 12, "web-0": 0, "web-01": 0, "web-": 0, "web-x": 0, "webs-1": 0, "web-1-2": 0, "web--1": 0} {
		got, ok := hostpool.SeqOf("web", name)
		if ok != (want != 0) || got != want {
			t.Errorf("SeqOf(web, %q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
