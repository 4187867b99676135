package placement

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const mib = 1 << 20

// place places n instances of group one after the other, as a controller
// launching a group would, and returns how many landed on each host.
func place(t *testing.T, hosts []Host, placed []Instance, req Request, n int) (map[string]int, []Instance) {
	t.Helper()
	count := map[string]int{}
	for range n {
		h, err := Choose(hosts, placed, req)
		if err != nil {
			t.Fatalf("after %v: %v", count, err)
		}
		count[h]++
		placed = append(placed, Instance{Group: req.Group, Host: h, CPU: req.CPU, Memory: req.Memory})
	}
	return count, placed
}

func TestSpreadOverZonesThenHosts(t *testing.T) {
	// Two hosts in zone a, one in zone b: six instances go 3 to each zone,
	// and the zone with two hosts splits its three 2/1 or 1/2.
	hosts := []Host{{Name: "a1", Zone: "a"}, {Name: "a2", Zone: "a"}, {Name: "b1", Zone: "b"}}
	count, _ := place(t, hosts, nil, Request{Group: "web"}, 6)
	if count["b1"] != 3 || count["a1"]+count["a2"] != 3 || count["a1"] == 0 || count["a2"] == 0 {
		t.Fatalf("spread = %v; want 3 in zone b and 3 over a1 and a2", count)
	}
}

func TestSpreadOverRegionsThenTheirZones(t *testing.T) {
	// Region nyc1 has zones a (two hosts) and b, region sfo3 one zone a
	// of one host: eight instances go 4 to each region, sfo3's all on s1,
	// nyc1's 2 per zone; zone "a" of nyc1 is not zone "a" of sfo3.
	hosts := []Host{{Name: "n1", Region: "nyc1", Zone: "a"}, {Name: "n2", Region: "nyc1", Zone: "a"},
		{Name: "n3", Region: "nyc1", Zone: "b"}, {Name: "s1", Region: "sfo3", Zone: "a"}}
	count, _ := place(t, hosts, nil, Request{Group: "web"}, 8)
	if count["s1"] != 4 || count["n3"] != 2 || count["n1"] != 1 || count["n2"] != 1 {
		t.Fatalf("spread = %v; want s1 4, n3 2, n1 and n2 1 each", count)
	}
}

func TestOtherGroupsDoNotSkewTheSpread(t *testing.T) {
	hosts := []Host{{Name: "a1", Zone: "a"}, {Name: "b1", Zone: "b"}}
	placed := []Instance{{Group: "worker", Host: "a1"}, {Group: "worker", Host: "a1"}}
	count, _ := place(t, hosts, placed, Request{Group: "web"}, 2)
	if count["a1"] != 1 || count["b1"] != 1 {
		t.Fatalf("spread = %v; want one per zone whatever else runs", count)
	}
}

func TestCapacityIsRespected(t *testing.T) {
	hosts := []Host{{Name: "small", CPU: 1, Memory: 512 * mib}, {Name: "big", CPU: 4, Memory: 4096 * mib}}
	req := Request{Group: "web", CPU: 0.5, Memory: 256 * mib}
	count, placed := place(t, hosts, nil, req, 10)
	if count["small"] > 2 || count["small"]+count["big"] != 10 {
		t.Fatalf("placed %v; small holds at most 2 of 0.5 CPU/256 MiB", count)
	}
	// big has 4 CPU: 8 instances; with small's 2 the fleet is full.
	_, err := Choose(hosts, placed, req)
	var nc *NoCapacityError
	if !errors.As(err, &nc) {
		t.Fatalf("11th instance: err = %v; want *NoCapacityError", err)
	}
	msg := err.Error()
	for _, want := range []string{"web (0.5 CPU, 256 MiB)", "big: 0 CPU free", "small: 0 CPU free, 0 MiB free"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestUnreadyHostsTakeNothing(t *testing.T) {
	hosts := []Host{{Name: "a", Unready: "unreachable"}, {Name: "b", Unready: "draining"}, {Name: "c"}}
	count, _ := place(t, hosts, nil, Request{Group: "web"}, 3)
	if count["c"] != 3 {
		t.Fatalf("placed %v; only c is ready", count)
	}
	_, err := Choose(hosts[:2], nil, Request{Group: "web"})
	if err == nil || !strings.Contains(err.Error(), "a: unreachable; b: draining") {
		t.Fatalf("err = %v; want both reasons in name order", err)
	}
	_, err = Choose(nil, nil, Request{Group: "web", Memory: 64 * mib})
	if err == nil || err.Error() != "no host can take an instance of web (64 MiB): no host has joined" {
		t.Fatalf("err = %v", err)
	}
}

func TestUnreadyZoneDoesNotHoldBackTheSpread(t *testing.T) {
	// Zone b's only host is down: its instances do not count, and zone a
	// takes everything rather than nothing.
	hosts := []Host{{Name: "a1", Zone: "a"}, {Name: "b1", Zone: "b", Unready: "unreachable"}}
	placed := []Instance{{Group: "web", Host: "b1"}, {Group: "web", Host: "b1"}}
	count, _ := place(t, hosts, placed, Request{Group: "web"}, 2)
	if count["a1"] != 2 {
		t.Fatalf("placed %v", count)
	}
}

func TestFreeMemoryBreaksTies(t *testing.T) {
	hosts := []Host{{Name: "a", Memory: 1024 * mib}, {Name: "b", Memory: 2048 * mib}}
	h, err := Choose(hosts, nil, Request{Group: "web", Memory: 128 * mib})
	if err != nil || h != "b" {
		t.Fatalf("Choose = %q, %v; want b (more free memory)", h, err)
	}
	// Instances on a host that left do not count anywhere.
	h, err = Choose(hosts, []Instance{{Group: "web", Host: "gone"}}, Request{Group: "web"})
	if err != nil || h != "b" {
		t.Fatalf("Choose = %q, %v", h, err)
	}
}

// FuzzChoose checks the rule's invariants on any fleet: the chosen host is
// ready and has room, no ready host with room lies in a zone with fewer
// instances of the group, and an error comes only when no host can take it.
func FuzzChoose(f *testing.F) {
	f.Add([]byte{3, 1, 2, 0, 9, 4, 7, 1, 1, 0, 2, 5})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int {
			if len(b) == 0 {
				return 0
			}
			v := int(b[0])
			b = b[1:]
			return v
		}
		var hosts []Host
		for i := range next()%6 + 1 {
			h := Host{Name: fmt.Sprintf("h%d", i), Zone: fmt.Sprintf("z%d", next()%3),
				CPU: float64(next() % 5), Memory: int64(next()%5) * 256 * mib}
			if next()%4 == 0 {
				h.Unready = "draining"
			}
			hosts = append(hosts, h)
		}
		var placed []Instance
		for range next() % 12 {
			placed = append(placed, Instance{Group: []string{"web", "api"}[next()%2],
				Host: fmt.Sprintf("h%d", next()%7), CPU: float64(next()%3) / 2, Memory: int64(next()%3) * 128 * mib})
		}
		req := Request{Group: "web", CPU: float64(next()%3) / 2, Memory: int64(next()%3) * 128 * mib}

		room := func(h Host) bool {
			var cpu float64
			var mem int64
			for _, in := range placed {
				if in.Host == h.Name {
					cpu += in.CPU
					mem += in.Memory
				}
			}
			// A request that declares no CPU (or memory) fits whatever is
			// used of it, even on an overcommitted host.
			return h.Unready == "" && (h.CPU == 0 || req.CPU == 0 || req.CPU <= h.CPU-cpu+1e-9) &&
				(h.Memory == 0 || req.Memory == 0 || req.Memory <= h.Memory-mem)
		}
		zoneOf := map[string]int{}
		for _, h := range hosts {
			if h.Unready != "" {
				continue
			}
			for _, in := range placed {
				if in.Host == h.Name && in.Group == req.Group {
					zoneOf[h.Zone]++
				}
			}
		}
		got, err := Choose(hosts, placed, req)
		// The same instances given as each host's sums choose the same.
		summed := make([]Host, len(hosts))
		for i, h := range hosts {
			h.Used.Groups = map[string]int{}
			for _, in := range placed {
				if in.Host == h.Name {
					h.Used.Instances++
					h.Used.Groups[in.Group]++
					h.Used.CPU += in.CPU
					h.Used.Memory += in.Memory
				}
			}
			summed[i] = h
		}
		if got2, err2 := Choose(summed, nil, req); got2 != got || (err == nil) != (err2 == nil) ||
			(err != nil && err.Error() != err2.Error()) {
			t.Fatalf("with Host.Used: %q, %v; with the instances: %q, %v", got2, err2, got, err)
		}
		anyRoom := false
		for _, h := range hosts {
			anyRoom = anyRoom || room(h)
		}
		if err != nil {
			if anyRoom {
				t.Fatalf("error %v while a host has room", err)
			}
			return
		}
		var chosen Host
		for _, h := range hosts {
			if h.Name == got {
				chosen = h
			}
		}
		if !room(chosen) {
			t.Fatalf("chose %+v without room for %+v among %+v", chosen, req, placed)
		}
		for _, h := range hosts {
			if room(h) && zoneOf[h.Zone] < zoneOf[chosen.Zone] {
				t.Fatalf("chose %s in zone %s (%d of the group) over %s in zone %s (%d)",
					got, chosen.Zone, zoneOf[chosen.Zone], h.Name, h.Zone, zoneOf[h.Zone])
			}
		}
	})
}

// TestFewestInstancesBreakTies: groups that declare no resources spread
// over the hosts together, instead of each filling the hosts that sort
// first (with 5 groups of 2 per host on 50 hosts, the first hosts ran 15
// and the last 5).
func TestFewestInstancesBreakTies(t *testing.T) {
	hosts := []Host{{Name: "a", Zone: "z"}, {Name: "b", Zone: "z"}, {Name: "c", Zone: "z"}}
	var placed []Instance
	for _, g := range []string{"g1", "g2", "g3"} {
		_, placed = place(t, hosts, placed, Request{Group: g}, 2)
	}
	count := map[string]int{}
	for _, in := range placed {
		count[in.Host]++
	}
	if count["a"] != 2 || count["b"] != 2 || count["c"] != 2 {
		t.Fatalf("six instances of three groups landed %v; want 2 on each host", count)
	}
}

// TestUsedAddsToPlaced: a host's Used sums and the instances passed to
// Choose both count, for the spread and for the capacity left.
func TestUsedAddsToPlaced(t *testing.T) {
	hosts := []Host{
		{Name: "a1", Zone: "a", CPU: 2, Used: Usage{Instances: 3, Groups: map[string]int{"web": 2, "api": 1}, CPU: 1.5}},
		{Name: "b1", Zone: "b", CPU: 2},
	}
	placed := []Instance{{Group: "web", Host: "b1", CPU: 0.5}, {Group: "web", Host: "b1", CPU: 0.5}}
	// Zone a has 2 of web (Used), zone b 2 (placed): a tie; a1 has 0.5
	// CPU free, b1 1 CPU.
	if h, err := Choose(hosts, placed, Request{Group: "web", CPU: 0.75}); err != nil || h != "b1" {
		t.Fatalf("Choose = %q, %v; want b1 (a1 has 0.5 CPU free)", h, err)
	}
	if h, err := Choose(hosts, nil, Request{Group: "web"}); err != nil || h != "b1" {
		t.Fatalf("Choose = %q, %v; want b1 (zone b runs no web)", h, err)
	}
	_, err := Choose(hosts, append(placed, Instance{Group: "api", Host: "b1", CPU: 1}), Request{Group: "api", CPU: 1})
	if err == nil || !strings.Contains(err.Error(), "a1: 0.5 CPU free") || !strings.Contains(err.Error(), "b1: 0 CPU free") {
		t.Fatalf("err = %v; want both hosts full", err)
	}
}
