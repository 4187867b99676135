package uisource

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dashboard"
)

// TestFleetFromHostsAndHostEvents: without Options.Hosts there is no
// fleet; with it, each host as the dashboard shows it, and the newest ten
// host events, newest first, asked from the start.
func TestFleetFromHostsAndHostEvents(t *testing.T) {
	ctx := context.Background()
	if f, err := (&Source{}).Fleet(ctx); f != nil || err != nil {
		t.Fatalf("Fleet without Hosts = %+v, %v; want nil", f, err)
	}
	beat := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	hosts := func() []api.HostStatus {
		return []api.HostStatus{{Name: "h1", URL: "https://10.0.0.2:7441", Zone: "a", State: api.HostDraining, CPU: 2, MemoryBytes: 1 << 30,
			UsedCPU: 0.5, UsedMemoryBytes: 64 << 20, Instances: 2, LastHeartbeat: beat, Epoch: "e1", Generation: 3}}
	}
	var asked []string
	events := func(after uint64, limit int) ([]api.Event, error) {
		asked = append(asked, strings.Join([]string{itoa(after), itoa(uint64(limit))}, ","))
		return []api.Event{
			{Seq: 7, Time: beat, Type: "host", Reason: "host h1 joined"},
			{Seq: 8, Time: beat, Type: "host", Reason: "host h1 draining: no new instance is placed on it"},
		}, nil
	}
	s := &Source{o: Options{Hosts: hosts, HostEvents: events}}
	f, err := s.Fleet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := dashboard.Host{Name: "h1", Zone: "a", State: "draining", CPU: 2, UsedCPU: 0.5, Memory: 1 << 30, UsedMemory: 64 << 20,
		Instances: 2, LastHeartbeat: beat}
	if len(f.Hosts) != 1 || f.Hosts[0] != want {
		t.Errorf("hosts = %+v, want [%+v]", f.Hosts, want)
	}
	if len(f.Events) != 2 || f.Events[0].Seq != 8 || f.Events[1].Seq != 7 || f.Events[0].Kind != dashboard.KindHost || f.Events[0].App != "" {
		t.Errorf("events = %+v, want 8 then 7, of kind host", f.Events)
	}
	if strings.Join(asked, " ") != "0,10" {
		t.Errorf("HostEvents asked with %v, want after 0, limit 10", asked)
	}

	s.o.HostEvents = func(uint64, int) ([]api.Event, error) { return nil, errors.New("store closed") }
	if _, err := s.Fleet(ctx); err == nil || !strings.Contains(err.Error(), "host events: store closed") {
		t.Errorf("Fleet with failing events: %v", err)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
