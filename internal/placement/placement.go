// Package placement chooses the host of a new instance in a fleet: it spreads
// the instances of a group over zones first, then over the hosts of a zone,
// and never places an instance where its declared CPU and memory do not fit
// the host's free capacity. It is pure: the caller passes what it knows of
// the hosts and of the instances placed so far, and gets a host name or the
// reason no host can take the instance.
//
// The rule, in order (the first difference decides):
//  1. only hosts that are ready (joined, reachable, not draining) and where
//     the request fits the capacity left;
//  2. the region with the fewest instances of the group, then, within it,
//     the zone with the fewest (counting every region and zone that has a
//     ready host, so an empty one is filled first; a zone is named within
//     its region: zone "a" of two regions is two zones);
//  3. within it, the host with the fewest instances of the group;
//  4. then the host with the most free memory, then the most free CPU;
//  5. then the host with the fewest instances of every group, so that
//     groups that declare no resources do not all pile onto the hosts
//     that sort first (found at 1,000 hosts: with 20 such groups, the
//     first hosts of each zone ran three times the average);
//  6. then the host name, so that the choice is deterministic.
//
// This is AWS Auto Scaling's balance across Availability Zones and the
// Kubernetes scheduler's topology spread with a resource fit, reduced to what
// a small fleet needs.
package placement

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Host is what placement needs to know of one host.
type Host struct {
	Name string
	// Region is the host's region label, Zone its zone label within the
	// region; hosts without one share the region (or zone) "".
	Region string
	Zone   string
	// CPU is the host's capacity in cores, Memory in bytes. Zero means
	// unknown and unbounded: any request fits.
	CPU    float64
	Memory int64
	// Unready says why the host takes no new instance ("unreachable",
	// "draining", "joining"); empty when it is ready.
	Unready string
	// Used is what already runs on the host, for a caller that keeps
	// these sums itself instead of passing every instance to Choose (the
	// fleet: listing 10,000 instances for each of 10,000 starts made a
	// bring-up quadratic). Choose counts it and the instances it is
	// passed on the host alike.
	Used Usage
}

// Usage sums the instances on one host.
type Usage struct {
	// Instances counts the instances of every group.
	Instances int
	// Groups counts them by group; Choose only reads it.
	Groups map[string]int
	// CPU and Memory are the sums of what they declared.
	CPU    float64
	Memory int64
}

// Instance is one instance already placed (running or being started),
// with the resources it declared.
type Instance struct {
	Group  string
	Host   string
	CPU    float64
	Memory int64
}

// Request is the instance to place: its group and declared resources. Zero
// CPU or Memory declares nothing of that resource.
type Request struct {
	Group  string
	CPU    float64
	Memory int64
}

// NoCapacityError says that no host can take the instance, and why each
// host cannot, in host name order.
type NoCapacityError struct {
	Request Request
	// Hosts maps each host to the reason it was not chosen.
	Hosts map[string]string
}

// Error reads like "no host can take an instance of web (0.5 CPU, 256 MiB):
// a: 0.2 CPU free; b: draining". With no host at all, it says so.
func (e *NoCapacityError) Error() string {
	want := e.Request.Group
	if d := describe(e.Request.CPU, e.Request.Memory); d != "" {
		want += " (" + d + ")"
	}
	if len(e.Hosts) == 0 {
		return "no host can take an instance of " + want + ": no host has joined"
	}
	names := make([]string, 0, len(e.Hosts))
	for n := range e.Hosts {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + e.Hosts[n]
	}
	return "no host can take an instance of " + want + ": " + strings.Join(parts, "; ")
}

// Choose returns the name of the host the instance req should run on,
// given every host (with what it runs already, Host.Used) and the
// instances placed besides (of any group). It returns a *NoCapacityError
// when no host is ready or has room. It costs O(hosts + placed).
func Choose(hosts []Host, placed []Instance, req Request) (string, error) {
	type use struct {
		cpu   float64
		mem   int64
		ofReq int // instances of req.Group
		all   int // instances of every group
	}
	used := make([]use, len(hosts))
	for i, h := range hosts {
		used[i] = use{cpu: h.Used.CPU, mem: h.Used.Memory, ofReq: h.Used.Groups[req.Group], all: h.Used.Instances}
	}
	if len(placed) > 0 {
		index := make(map[string]int, len(hosts))
		for i, h := range hosts {
			index[h.Name] = i
		}
		for _, in := range placed {
			i, ok := index[in.Host]
			if !ok {
				continue // on a host that left: it uses none of these hosts
			}
			u := &used[i]
			u.cpu += in.CPU
			u.mem += in.Memory
			u.all++
			if in.Group == req.Group {
				u.ofReq++
			}
		}
	}

	// Instances of the group per region and per zone, over the regions
	// and zones with a ready host.
	zoneCount := map[zoneKey]int{}
	regionCount := map[string]int{}
	for i, h := range hosts {
		if h.Unready == "" {
			zoneCount[zoneKey{h.Region, h.Zone}] += used[i].ofReq
			regionCount[h.Region] += used[i].ofReq
		}
	}

	why := map[string]string{}
	var best *Host
	var bestUse *use
	var bestFree [2]float64
	for i := range hosts {
		h := &hosts[i]
		u := &used[i]
		if h.Unready != "" {
			why[h.Name] = h.Unready
			continue
		}
		freeCPU, freeMem := h.CPU-u.cpu, float64(h.Memory-u.mem)
		if reason := fits(h, freeCPU, h.Memory-u.mem, req); reason != "" {
			why[h.Name] = reason
			continue
		}
		if h.CPU == 0 {
			freeCPU = 0
		}
		if h.Memory == 0 {
			freeMem = 0
		}
		if best == nil || better(h, best, regionCount, zoneCount, [2]int{u.ofReq, u.all}, [2]int{bestUse.ofReq, bestUse.all},
			[2]float64{freeMem, freeCPU}, bestFree) {
			best, bestUse, bestFree = h, u, [2]float64{freeMem, freeCPU}
		}
	}
	if best == nil {
		return "", &NoCapacityError{Request: req, Hosts: why}
	}
	return best.Name, nil
}

// zoneKey names a zone within its region.
type zoneKey struct{ region, zone string }

// fits says why req does not fit on h with the capacity left, or "".
func fits(h *Host, freeCPU float64, freeMem int64, req Request) string {
	var short []string
	if h.CPU > 0 && req.CPU > 0 && req.CPU > freeCPU+1e-9 {
		short = append(short, fmt.Sprintf("%s CPU free", formatCPU(max(freeCPU, 0))))
	}
	if h.Memory > 0 && req.Memory > 0 && req.Memory > freeMem {
		short = append(short, formatMem(max(freeMem, 0))+" free")
	}
	return strings.Join(short, ", ")
}

// better reports whether host a is a better choice than host b by the
// package's rule (steps 2 to 6); na and nb are their instances of the
// group and of every group, fa and fb their free memory and CPU.
func better(a, b *Host, regionCount map[string]int, zoneCount map[zoneKey]int, na, nb [2]int, fa, fb [2]float64) bool {
	if c := cmp.Compare(regionCount[a.Region], regionCount[b.Region]); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(zoneCount[zoneKey{a.Region, a.Zone}], zoneCount[zoneKey{b.Region, b.Zone}]); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(na[0], nb[0]); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(fa[0], fb[0]); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(fa[1], fb[1]); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(na[1], nb[1]); c != 0 {
		return c < 0
	}
	return a.Name < b.Name
}

// describe reads like "0.5 CPU, 256 MiB"; it leaves out what is zero.
func describe(cpu float64, mem int64) string {
	var parts []string
	if cpu > 0 {
		parts = append(parts, formatCPU(cpu)+" CPU")
	}
	if mem > 0 {
		parts = append(parts, formatMem(mem))
	}
	return strings.Join(parts, ", ")
}

func formatCPU(c float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", c), "0"), ".")
}

func formatMem(b int64) string {
	const mib = 1 << 20
	if b >= 1<<30 && b%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%d MiB", (b+mib-1)/mib)
}
