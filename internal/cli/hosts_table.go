package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// printHosts writes the fleet's hosts as a table grouped by region (the
// regions by name, hosts without one last; by name within each): region
// (when any host has one), name, zone, state (with the reason when not ready), CPU and memory used
// of capacity, instances, and the age of the last heartbeat at now.
// The balancer nodes among them (role lb) follow in a second table
// (printBalancerNodes). `shoal status` prints it when the status carries
// hosts.
func printHosts(w io.Writer, hosts []api.HostStatus, now time.Time) {
	var nodes []api.HostStatus
	hosts = slices.DeleteFunc(slices.Clone(hosts), func(h api.HostStatus) bool {
		if h.Role == api.RoleLB {
			nodes = append(nodes, h)
			return true
		}
		return false
	})
	defer func() {
		if len(nodes) > 0 {
			fmt.Fprintln(w)
			printBalancerNodes(w, nodes, now)
		}
	}()
	slices.SortStableFunc(hosts, func(a, b api.HostStatus) int {
		if (a.Region == "") != (b.Region == "") {
			if a.Region == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(strings.Compare(a.Region, b.Region), strings.Compare(a.Name, b.Name))
	})
	regions := slices.ContainsFunc(hosts, func(h api.HostStatus) bool { return h.Region != "" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if regions {
		fmt.Fprint(tw, "REGION\t")
	}
	fmt.Fprintln(tw, "HOST\tZONE\tSTATE\tCPU\tMEMORY\tINSTANCES\tHEARTBEAT")
	for _, h := range hosts {
		if regions {
			fmt.Fprintf(tw, "%s\t", orDash(h.Region))
		}
		state := string(h.State)
		if h.Reason != "" {
			state += " (" + h.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", h.Name, orDash(h.Zone), state,
			usedOf(cores(h.UsedCPU), h.CPU == 0, cores(h.CPU)),
			usedOf(memSize(h.UsedMemoryBytes), h.MemoryBytes == 0, memSize(h.MemoryBytes)),
			h.Instances, heartbeatAge(h.LastHeartbeat, now))
	}
	tw.Flush()
}

// printBalancerNodes writes the balancer nodes that follow the server,
// by name: the address of their last call, state (with the reason when not
// ready), the configuration version applied of the server's ("7/8" is one
// change behind) and the age of the last call at now.
func printBalancerNodes(w io.Writer, nodes []api.HostStatus, now time.Time) {
	nodes = slices.Clone(nodes)
	slices.SortFunc(nodes, func(a, b api.HostStatus) int { return strings.Compare(a.Name, b.Name) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BALANCER\tADDRESS\tSTATE\tCONFIG\tLAST CALL")
	for _, h := range nodes {
		state := string(h.State)
		if h.Reason != "" {
			state += " (" + h.Reason + ")"
		}
		addr, cfg := "-", "-"
		if b := h.Balancer; b != nil {
			addr, cfg = orDash(b.Addr), fmt.Sprintf("%d/%d", b.Applied, b.ServerVersion)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, addr, state, cfg, heartbeatAge(h.LastHeartbeat, now))
	}
	tw.Flush()
}

// usedOf is "used/capacity", or "used/-" for a host without a bound.
func usedOf(used string, unbounded bool, capacity string) string {
	if unbounded {
		return used + "/-"
	}
	return used + "/" + capacity
}

// cores prints a number of cores with up to three decimals: 0.5, 4, 0.125.
func cores(c float64) string { return strconv.FormatFloat(c, 'f', -1, 64) }

// memSize prints a memory size in binary units, as run.memory and
// agent.yaml's memory are written (byteSize, for artifacts, uses SI
// units): 0B, 512B, 1.5GiB, 256MiB; one decimal under ten units.
func memSize(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	if f < 10 && f != float64(int64(f)) {
		return strconv.FormatFloat(f, 'f', 1, 64) + unit
	}
	return strconv.FormatFloat(f, 'f', 0, 64) + unit
}

// heartbeatAge is "3s ago", or "never" when the host has not answered in
// this run of the server.
func heartbeatAge(at, now time.Time) string {
	if at.IsZero() {
		return "never"
	}
	d := max(now.Sub(at), 0)
	if d < time.Minute {
		return d.Round(time.Second).String() + " ago"
	}
	return d.Round(time.Minute).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
