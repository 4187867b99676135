package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

func TestPrintStatusShowsMaintenance(t *testing.T) {
	st := client.Status{App: "web", Release: 1, Desired: 1, Instances: []client.Instance{}}
	var off, on bytes.Buffer
	printStatus(&off, st, time.Now())
	st.Maintenance = true
	printStatus(&on, st, time.Now())
	if strings.Contains(off.String(), "maintenance") {
		t.Errorf("maintenance off, yet:\n%s", off.String())
	}
	if !strings.Contains(on.String(), "maintenance: on") {
		t.Errorf("maintenance on, not shown:\n%s", on.String())
	}
}

// TestPrintStatusHostsAndInstanceHosts: the host column appears only when
// an instance runs on a host other than "local"; the hosts table only
// when the status carries hosts.
func TestPrintStatusHostsAndInstanceHosts(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	local := []client.Instance{{ID: "web-v1-a1", Release: 1, State: api.InService, Health: "ok", Addr: "127.0.0.1:4000", Host: "local"}}
	fleet := []client.Instance{
		{ID: "web-v1-a1", Release: 1, State: api.InService, Health: "ok", Addr: "10.0.0.2:4000", Host: "h1", Zone: "a", UptimeSeconds: 90},
		{ID: "web-v1-b2", Release: 1, State: api.Pending, Health: "unknown", Reason: "no capacity"},
	}
	hosts := []api.HostStatus{
		{Name: "h1", Zone: "a", State: api.HostReady, CPU: 4, MemoryBytes: 8 << 30, UsedCPU: 0.5, UsedMemoryBytes: 256 << 20,
			Instances: 1, LastHeartbeat: now.Add(-2 * time.Second)},
		{Name: "h2", State: api.HostUnreachable, Reason: "no heartbeat for 5s", UsedMemoryBytes: 1536 << 20},
	}
	tests := []struct {
		name      string
		instances []client.Instance
		hosts     []api.HostStatus
		want      []string
	}{
		{"shoal up", local, nil, []string{
			"INSTANCE   RELEASE  STATE       HEALTH  ADDRESS         UPTIME  REQ/S  REASON",
			"web-v1-a1  v1       in_service  ok      127.0.0.1:4000  -       0.0",
		}},
		{"a fleet", fleet, hosts, []string{
			"INSTANCE   RELEASE  STATE       HEALTH   ADDRESS        HOST    UPTIME  REQ/S  REASON",
			"web-v1-a1  v1       in_service  ok       10.0.0.2:4000  h1 (a)  2m0s    0.0",
			"web-v1-b2  v1       pending     unknown  -              -       -       0.0    no capacity",
			"",
			"HOST  ZONE  STATE                              CPU    MEMORY       INSTANCES  HEARTBEAT",
			"h1    a     ready                              0.5/4  256MiB/8GiB  1          2s ago",
			"h2    -     unreachable (no heartbeat for 5s)  0/-    1.5GiB/-     0          never",
		}},
		{"hosts grouped by region", fleet, []api.HostStatus{
			{Name: "b1", Region: "sfo3", State: api.HostReady, Instances: 1},
			{Name: "a2", Region: "nyc1", Zone: "b", State: api.HostReady},
			{Name: "z1", State: api.HostReady},
			{Name: "a1", Region: "nyc1", Zone: "a", State: api.HostReady},
		}, []string{
			"INSTANCE   RELEASE  STATE       HEALTH   ADDRESS        HOST    UPTIME  REQ/S  REASON",
			"web-v1-a1  v1       in_service  ok       10.0.0.2:4000  h1 (a)  2m0s    0.0",
			"web-v1-b2  v1       pending     unknown  -              -       -       0.0    no capacity",
			"",
			"REGION  HOST  ZONE  STATE  CPU  MEMORY  INSTANCES  HEARTBEAT",
			"nyc1    a1    a     ready  0/-  0B/-    0          never",
			"nyc1    a2    b     ready  0/-  0B/-    0          never",
			"sfo3    b1    -     ready  0/-  0B/-    1          never",
			"-       z1    -     ready  0/-  0B/-    0          never",
		}},
		{"hosts, none yet", local, []api.HostStatus{}, []string{
			"INSTANCE   RELEASE  STATE       HEALTH  ADDRESS         UPTIME  REQ/S  REASON",
			"web-v1-a1  v1       in_service  ok      127.0.0.1:4000  -       0.0",
			"",
			"HOST  ZONE  STATE  CPU  MEMORY  INSTANCES  HEARTBEAT",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, client.Status{App: "web", Host: "local", Release: 1, Desired: 1, Instances: tt.instances, Hosts: tt.hosts}, now)
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")[1:] // after the group line
			for i := range lines {
				lines[i] = strings.TrimRight(lines[i], " ")
			}
			if got, want := strings.Join(lines, "\n"), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestPrintStatusShowsMoves: an instance being moved off a draining host
// says so in its reason column.
func TestPrintStatusShowsMoves(t *testing.T) {
	st := client.Status{App: "web", Release: 1, Desired: 1, InService: 1, Instances: []client.Instance{
		{ID: "web-1", Release: 1, State: api.InService, Reason: "healthy after 5ms", Moving: "off host h1 (draining)"},
		{ID: "web-2", Release: 1, State: api.Pending, Reason: "no capacity: an instance of web: h1: draining", Replaces: "web-1"},
	}}
	var b bytes.Buffer
	printStatus(&b, st, time.Now())
	for _, want := range []string{"moving off host h1 (draining)", "no capacity: an instance of web: h1: draining"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
