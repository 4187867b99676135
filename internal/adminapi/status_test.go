package adminapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/lb"
)

func TestStatusSaysMaintenance(t *testing.T) {
	b, err := lb.New(lb.Config{
		Listeners: []lb.Listener{{Name: "http", Addr: "127.0.0.1:0"}},
		Routes:    []lb.Route{{Name: "web", PathPrefix: "/", Pool: "web"}},
		Pools:     []lb.PoolConfig{{Name: "web"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ControllerRoutes(mux, newTestController(t), WithBalancer(b))
	LBRoutes(mux, b, nil)
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	for _, on := range []bool{false, true, false} {
		if err := c.Maintenance(ctx, on, 0); err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Maintenance != on {
			t.Fatalf("maintenance %v: status says %v", on, st.Maintenance)
		}
	}
}

// TestStatusListsHosts: with WithHosts the status carries the fleet's
// hosts as the function returns them at each answer; without it the key
// is absent (shoal up).
func TestStatusListsHosts(t *testing.T) {
	beat := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var calls atomic.Int32
	hosts := func() []api.HostStatus {
		calls.Add(1)
		return []api.HostStatus{
			{Name: "h1", Zone: "a", State: api.HostReady, CPU: 4, MemoryBytes: 8 << 30, UsedCPU: 0.5, UsedMemoryBytes: 256 << 20, Instances: 1, LastHeartbeat: beat},
			{Name: "h2", Zone: "b", State: api.HostUnreachable, Reason: "no heartbeat for 5s"},
		}
	}
	ctrl := newTestController(t)
	for _, with := range []bool{true, false} {
		mux := http.NewServeMux()
		if with {
			ControllerRoutes(mux, ctrl, WithHosts(hosts))
		} else {
			ControllerRoutes(mux, ctrl)
		}
		srv := httptest.NewServer(RequireToken("tok", mux))
		c := client.New(srv.URL, "tok")
		st, err := c.Status(context.Background())
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		raw := getRaw(t, srv.URL+"/v1/status", "tok")
		srv.Close()
		if !with {
			if st.Hosts != nil || strings.Contains(raw, `"hosts"`) {
				t.Errorf("without WithHosts: hosts %+v in %s", st.Hosts, raw)
			}
			continue
		}
		if len(st.Hosts) != 2 || st.Hosts[0].Name != "h1" || st.Hosts[0].UsedCPU != 0.5 || !st.Hosts[0].LastHeartbeat.Equal(beat) ||
			st.Hosts[1].State != api.HostUnreachable || st.Hosts[1].Reason != "no heartbeat for 5s" {
			t.Errorf("hosts = %+v", st.Hosts)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("hosts called %d times for two answers, want 2", calls.Load())
	}
}

func getRaw(t *testing.T, url, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
