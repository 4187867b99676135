package api

import (
	"encoding/json"
	"testing"
	"time"
)

// TestHostStatusWireUnchanged holds `shoal hosts`' answer to its bytes.
func TestHostStatusWireUnchanged(t *testing.T) {
	beat := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		v    HostStatus
		want string
	}{
		{HostStatus{Name: "h1", Role: RoleAgent, URL: "https://10.0.0.1:7443", Zone: "a", State: HostReady, CPU: 2, MemoryBytes: 1 << 30,
			UsedCPU: 0.5, UsedMemoryBytes: 1 << 28, Instances: 2, LastHeartbeat: beat, Epoch: "e1", Generation: 3, Version: "v1"},
			`{"name":"h1","role":"agent","url":"https://10.0.0.1:7443","zone":"a","state":"ready","cpu":2,"memory_bytes":1073741824,"used_cpu":0.5,"used_memory_bytes":268435456,"instances":2,"last_heartbeat":"2026-03-01T12:00:00Z","epoch":"e1","generation":3,"version":"v1"}`},
		{HostStatus{Name: "h2", Role: RoleAgent, State: HostUnreachable, Reason: "host h2 unreachable for 5s"},
			`{"name":"h2","role":"agent","url":"","state":"unreachable","reason":"host h2 unreachable for 5s","cpu":0,"memory_bytes":0,"used_cpu":0,"used_memory_bytes":0,"instances":0,"epoch":"","generation":0}`},
		{HostStatus{Name: "lb-1", Role: RoleLB, State: HostReady, LastHeartbeat: beat,
			Balancer: &BalancerNodeStatus{Addr: "10.0.0.9", Applied: 7, ServerVersion: 8}},
			`{"name":"lb-1","role":"lb","url":"","state":"ready","cpu":0,"memory_bytes":0,"used_cpu":0,"used_memory_bytes":0,"instances":0,"last_heartbeat":"2026-03-01T12:00:00Z","epoch":"","generation":0,"balancer":{"addr":"10.0.0.9","applied":7,"server_version":8}}`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s = %s, %v; want %s", tc.v.Name, got, err, tc.want)
		}
	}
}
