package adminapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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
