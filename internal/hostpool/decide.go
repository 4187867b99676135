package hostpool

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Limits are a pool's bounds and clocks (server.yaml host_pools).
type Limits struct {
	Min, Max int
	// EmptyAfter is how long a host stays empty before it is drained and
	// destroyed.
	EmptyAfter time.Duration
	// JoinDeadline is how long a new machine has to join the fleet (and
	// an unreachable one to answer again) before it is destroyed and
	// replaced.
	JoinDeadline time.Duration
	// Regions are where machines are made, spread evenly, in this order
	// on a tie.
	Regions []string
}

// Observed is one machine of the pool with what the fleet knows of it.
type Observed struct {
	Machine
	// Joined: the fleet has a host of the machine's name.
	Joined bool
	// State is the host's state (when Joined), Instances how many run on
	// it, CPU and Memory its capacity (zero: unknown, unbounded).
	State     api.HostState
	Instances int
	CPU       float64
	Memory    int64
	// EmptyFor is how long the host has been ready with no instance
	// (zero when it has any); UnreachableFor how long it has been
	// unreachable (zero when it is not).
	EmptyFor, UnreachableFor time.Duration
}

// Demand is one instance the fleet could not place for lack of capacity.
type Demand struct {
	App    string
	CPU    float64
	Memory int64
	// Retry: refused before a host became ready, and not tried since; it
	// may fit that host, so it adds no host, but it holds off scaling in
	// (fleet.Unplaced's Current, negated).
	Retry bool
}

// Input is what one pass decides from. Decide reads it only.
type Input struct {
	Pool   string
	Now    time.Time
	Limits Limits
	// Machines are the pool's machines as the provider lists them.
	Machines []Observed
	// Pending are the instances waiting for capacity (fleet.Unplaced).
	Pending []Demand
	// NextSeq is the first sequence number no host name of the pool has
	// used (machines, fleet hosts and joined names).
	NextSeq int
}

// NewMachine is a machine Decide asks for.
type NewMachine struct {
	Name, Region string
}

// Decision is what to do now, each part with its reason and inputs.
type Decision struct {
	// Create are the machines to make.
	Create []NewMachine
	// Drain are the hosts to drain (empty for EmptyAfter).
	Drain []string
	// Destroy are the machines to destroy (drained and empty, never
	// joined, or unreachable past JoinDeadline), with why.
	Destroy []Doomed
	// Reason explains the decision with its inputs; "" when nothing is
	// to be done.
	Reason string
}

// Doomed is a machine to destroy and why.
type Doomed struct {
	Machine
	Reason string
}

// Decide is the pool's pure decision. In order:
//
//  1. a machine that has not joined within JoinDeadline of its creation,
//     or whose host has been unreachable for JoinDeadline, is destroyed
//     (and so no longer counts);
//  2. the pending instances (but those to be retried on a host that has
//     become ready since their refusal) are packed, first fit by decreasing size,
//     onto hosts of the capacity the pool's joined hosts have (one host
//     when none has joined or none declares a capacity); the machines
//     still booting (made, not yet ready) count as hosts on the way; what
//     is missing is created, never beyond Max, and at least up to Min;
//  3. only when nothing waits (retries included) and nothing is created: a ready host empty
//     for EmptyAfter is drained (the newest first), and a draining host
//     with no instance is destroyed, never below Min.
//
// New machines go to the region with the fewest machines, names follow
// NextSeq.
func Decide(in Input) Decision {
	var d Decision
	lim := in.Limits
	var why []string
	alive := make([]Observed, 0, len(in.Machines))
	for _, m := range in.Machines {
		age := in.Now.Sub(m.Created)
		switch {
		case !m.Joined && lim.JoinDeadline > 0 && age > lim.JoinDeadline:
			d.Destroy = append(d.Destroy, Doomed{m.Machine, fmt.Sprintf("%s did not join within %s (made %s ago)", m.Name, lim.JoinDeadline, age.Round(time.Second))})
		case m.Joined && m.State == api.HostUnreachable && lim.JoinDeadline > 0 && m.UnreachableFor > lim.JoinDeadline:
			d.Destroy = append(d.Destroy, Doomed{m.Machine, fmt.Sprintf("%s unreachable for %s (more than %s)", m.Name, m.UnreachableFor.Round(time.Second), lim.JoinDeadline)})
		default:
			alive = append(alive, m)
		}
	}
	count := len(alive)

	// Scale out.
	var capCPU float64
	var capMem int64
	booting := 0
	for _, m := range alive {
		if !m.Joined || m.State == api.HostJoining {
			booting++
		}
		if m.Joined {
			capCPU, capMem = max(capCPU, m.CPU), max(capMem, m.Memory)
		}
	}
	need := 0
	var current []Demand
	for _, p := range in.Pending {
		if !p.Retry {
			current = append(current, p)
		}
	}
	if len(current) > 0 {
		need = hostsFor(current, capCPU, capMem)
		why = append(why, fmt.Sprintf("%d instances wait for capacity (%s), %s per host; %d hosts booting",
			len(current), sumDemand(current), capacityWords(capCPU, capMem), booting))
	}
	add := max(need-booting, 0)
	if count+add < lim.Min {
		why = append(why, fmt.Sprintf("%d machines, min %d", count, lim.Min))
		add = lim.Min - count
	}
	if count+add > lim.Max {
		if add > 0 {
			why = append(why, fmt.Sprintf("capped by max %d (%d machines)", lim.Max, count))
		}
		add = max(lim.Max-count, 0)
	}
	if add > 0 {
		regions := map[string]int{}
		for _, m := range alive {
			regions[m.Region]++
		}
		seq := max(in.NextSeq, 1)
		for range add {
			r := leastRegion(lim.Regions, regions)
			regions[r]++
			d.Create = append(d.Create, NewMachine{Name: MachineName(in.Pool, seq), Region: r})
			seq++
		}
		count += add
	}

	// Scale in, only when the pool is at rest.
	if len(in.Pending) == 0 && add == 0 {
		byNewest := slices.Clone(alive)
		slices.SortFunc(byNewest, func(a, b Observed) int {
			sa, _ := SeqOf(in.Pool, a.Name)
			sb, _ := SeqOf(in.Pool, b.Name)
			return cmp.Compare(sb, sa)
		})
		for _, m := range byNewest {
			if count <= lim.Min {
				break
			}
			switch {
			case m.Joined && m.State == api.HostDraining && m.Instances == 0:
				d.Destroy = append(d.Destroy, Doomed{m.Machine, fmt.Sprintf("%s drained and empty (%d machines, min %d)", m.Name, count, lim.Min)})
				count--
			case m.Joined && m.State == api.HostReady && m.Instances == 0 && m.EmptyFor >= lim.EmptyAfter:
				d.Drain = append(d.Drain, m.Name)
				why = append(why, fmt.Sprintf("%s empty for %s (empty_after %s)", m.Name, m.EmptyFor.Round(time.Second), lim.EmptyAfter))
				count--
			}
		}
	}

	var parts []string
	if len(d.Create) > 0 {
		names := make([]string, len(d.Create))
		for i, c := range d.Create {
			names[i] = c.Name + " in " + c.Region
		}
		parts = append(parts, fmt.Sprintf("add %d hosts (%s)", len(d.Create), strings.Join(names, ", ")))
	}
	if len(d.Drain) > 0 {
		parts = append(parts, "drain "+strings.Join(d.Drain, ", "))
	}
	for _, x := range d.Destroy {
		parts = append(parts, "destroy "+x.Reason)
	}
	if len(parts) > 0 {
		d.Reason = fmt.Sprintf("pool %s: %s", in.Pool, strings.Join(parts, "; "))
		if len(why) > 0 {
			d.Reason += ": " + strings.Join(why, "; ")
		}
		d.Reason += fmt.Sprintf(" [%d machines, min %d, max %d]", len(in.Machines), lim.Min, lim.Max)
	}
	return d
}

// hostsFor is how many hosts of capacity (cpu, mem) the demands need,
// packed first fit by decreasing size; an unknown capacity (zero) fits
// everything of that resource, so at least one host.
func hostsFor(ds []Demand, cpu float64, mem int64) int {
	items := slices.Clone(ds)
	slices.SortFunc(items, func(a, b Demand) int {
		if c := cmp.Compare(b.Memory, a.Memory); c != 0 {
			return c
		}
		return cmp.Compare(b.CPU, a.CPU)
	})
	type bin struct {
		cpu float64
		mem int64
	}
	var bins []bin
	for _, it := range items {
		placed := false
		for i := range bins {
			b := &bins[i]
			if (cpu == 0 || b.cpu+it.CPU <= cpu+1e-9) && (mem == 0 || b.mem+it.Memory <= mem) {
				b.cpu += it.CPU
				b.mem += it.Memory
				placed = true
				break
			}
		}
		if !placed {
			bins = append(bins, bin{it.CPU, it.Memory}) // one too big for a host still gets one
		}
	}
	return max(len(bins), 1)
}

func leastRegion(regions []string, count map[string]int) string {
	best := ""
	for i, r := range regions {
		if i == 0 || count[r] < count[best] {
			best = r
		}
	}
	return best
}

func sumDemand(ds []Demand) string {
	var cpu float64
	var mem int64
	for _, d := range ds {
		cpu += d.CPU
		mem += d.Memory
	}
	return capacityWords(cpu, mem)
}

// capacityWords reads like "2 CPU, 4096 MiB" or "unbounded".
func capacityWords(cpu float64, mem int64) string {
	var p []string
	if cpu > 0 {
		p = append(p, fmt.Sprintf("%g CPU", cpu))
	}
	if mem > 0 {
		p = append(p, fmt.Sprintf("%d MiB", mem>>20))
	}
	if len(p) == 0 {
		return "no declared resources"
	}
	return strings.Join(p, ", ")
}
