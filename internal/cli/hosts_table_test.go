package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestPrintHostsBalancerNodes: the balancer nodes among the hosts leave
// the hosts table for a second one: address, state, the configuration
// version applied of the server's, and the age of the last call.
func TestPrintHostsBalancerNodes(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	hosts := []api.HostStatus{
		{Name: "lb-2", Role: api.RoleLB, State: api.HostUnreachable, Reason: "no call for 41s", LastHeartbeat: now.Add(-41 * time.Second),
			Balancer: &api.BalancerNodeStatus{Addr: "10.0.0.8", Applied: 5, ServerVersion: 9}},
		{Name: "h1", Role: api.RoleAgent, Zone: "a", State: api.HostReady, Instances: 1, LastHeartbeat: now.Add(-time.Second)},
		{Name: "lb-1", Role: api.RoleLB, State: api.HostReady, LastHeartbeat: now.Add(-2 * time.Second),
			Balancer: &api.BalancerNodeStatus{Addr: "10.0.0.7", Applied: 9, ServerVersion: 9}},
		{Name: "lb-3", Role: api.RoleLB, State: api.HostJoining, Reason: "joined before this run of the server; no call yet",
			Balancer: &api.BalancerNodeStatus{}},
	}
	var b strings.Builder
	printHosts(&b, hosts, now)
	want := strings.Join([]string{
		"HOST  ZONE  STATE  CPU  MEMORY  INSTANCES  HEARTBEAT",
		"h1    a     ready  0/-  0B/-    1          1s ago",
		"",
		"BALANCER  ADDRESS   STATE                                                        CONFIG  LAST CALL",
		"lb-1      10.0.0.7  ready                                                        9/9     2s ago",
		"lb-2      10.0.0.8  unreachable (no call for 41s)                                5/9     41s ago",
		"lb-3      -         joining (joined before this run of the server; no call yet)  0/0     never",
		"",
	}, "\n")
	if got := b.String(); got != want {
		t.Errorf("printHosts:\n%s\nwant:\n%s", got, want)
	}
}
