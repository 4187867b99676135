package adminapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
)

// newTestController returns a controller wired to real parts that is not
// running: enough to exercise the routes' plumbing and error mapping.
func newTestController(t testing.TB) *controller.Controller {
	t.Helper()
	dir := t.TempDir()
	yml := "app: web\nrun:\n  command: sleep 100\n"
	if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := release.Open(filepath.Join(dir, "arts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.NewLocal(runtime.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	host := controller.NewLocalHost(rt, arts, filepath.Join(dir, "rel"))
	t.Cleanup(func() {
		rt.Close(context.Background())
		<-host.Done()
	})
	c, err := controller.New(controller.Options{Config: cfg, Store: st, Artifacts: arts, Host: host,
		Pool: pool.New(pool.Options{Name: "web"})})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestControllerRoutesNeedToken(t *testing.T) {
	mux := http.NewServeMux()
	ControllerRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("right-token", mux))
	defer srv.Close()
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"POST", "/v1/scale", `{"desired":1}`},
		{"GET", "/v1/events", ""},
		{"GET", "/v1/events?follow=true", ""},
		{"GET", "/v1/releases", ""},
		{"GET", "/v1/instances/web-v1-x/logs", ""},
		{"GET", "/v1/instances/web-v1-x/logs?follow=true", ""},
	}
	for _, tok := range []string{"", "wrong-token"} {
		for _, r := range routes {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r.method, r.path, tok, resp.StatusCode)
			}
		}
	}
}

func TestControllerRoutesAnswer(t *testing.T) {
	mux := http.NewServeMux()
	ControllerRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.App != "web" || st.Host != "local" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	// The group is not prepared (Run not called): min = max = 0.
	if _, err := c.Scale(ctx, 5); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("scale out of range: %v, want 400", err)
	}
	for _, body := range []string{`{}`, `{"desired":"x"}`, `{"desired":1,"extra":2}`, `{"desired":1} {}`, `nope`} {
		resp, err := http.DefaultClient.Do(authed(t, "POST", srv.URL+"/v1/scale", body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("scale body %q: %d, want 400", body, resp.StatusCode)
		}
	}
	if evs, err := c.Events(ctx, 0, 10); err != nil || len(evs) != 0 {
		t.Errorf("events = %v, %v", evs, err)
	}
	if rels, err := c.Releases(ctx); err != nil || len(rels) != 0 {
		t.Errorf("releases = %v, %v", rels, err)
	}
	var sb strings.Builder
	if err := c.Logs(ctx, "web-v1-nope", 10, false, &sb); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("logs of unknown instance: %v, want 404", err)
	}
	resp, err := http.DefaultClient.Do(authed(t, "GET", srv.URL+"/v1/events?after=x", ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("events?after=x: %d, want 400", resp.StatusCode)
	}
}

func authed(t *testing.T, method, url, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	return req
}

// FuzzDecodeScale checks that the scale body parser never panics and
// accepts only bodies with a desired count.
func FuzzDecodeScale(f *testing.F) {
	for _, s := range []string{`{"desired":3}`, `{}`, `{"desired":-1}`, `[]`, `{"desired":1}{}`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		req, err := decodeScale(strings.NewReader(s))
		if err == nil && req.Desired == nil {
			t.Fatalf("accepted %q without desired", s)
		}
	})
}
