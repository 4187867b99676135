package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// waitHostsReady waits until every host named is ready.
func waitHostsReady(t *testing.T, ctx context.Context, ts *testServer, names ...string) {
	t.Helper()
	admin := ts.client(t, "")
	testenv.Eventually(t, 30*time.Second, func() error {
		hosts, err := admin.Hosts(ctx)
		if err != nil {
			return err
		}
		ready := 0
		for _, h := range hosts {
			if h.State == api.HostReady {
				ready++
			}
		}
		if ready != len(names) {
			return fmt.Errorf("hosts %+v, want %v ready", hosts, names)
		}
		return nil
	})
}

// dashboardLogin logs in to the server's dashboard with token and returns
// a client holding the session.
func dashboardLogin(t *testing.T, ctx context.Context, adminURL, token string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	form := url.Values{"token": {token}, "next": {"/ui/"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminURL+"/ui/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", adminURL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

// page GETs adminURL+path with c and returns the status and body.
func page(t *testing.T, ctx context.Context, c *http.Client, adminURL, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fetch(t, c, req)
}

// fetch sends req with c and returns the status and body.
func fetch(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServerDashboardAndMetrics: the server's dashboard at /ui/ logs in
// with the admin token (and nothing else: the API's bearer token is not
// a session), shows every app; each app's page (?app=) lists its own
// instances with their host and zone, not the other app's, with the
// hosts card of the fleet; each app's request series hold only its own
// traffic through the shared balancer. /metrics has each app's
// controller series with an app label and the fleet's hosts by state.
func TestServerDashboardAndMetrics(t *testing.T) {
	dir := t.TempDir()
	agents := &agentSet{}
	t.Cleanup(agents.stop)
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	agents.startAgent(t, ts, "host-a")
	ctx := testenv.Context(t, 2*time.Minute)
	waitHostsReady(t, ctx, ts, "host-a")

	ids := map[string]string{}
	for _, d := range []struct{ app, text string }{
		{"web", appYAML(t, "web", "web.test")}, {"api", appYAML(t, "api")},
	} {
		c := ts.client(t, d.app)
		if res, err := deployApp(t, ctx, c, d.text, d.app+"-1"); err != nil || !res.OK {
			t.Fatalf("deploy %s: %+v, %v", d.app, res, err)
		}
		st, err := c.Status(ctx)
		if err != nil || len(st.Instances) != 1 {
			t.Fatalf("%s: %+v, %v", d.app, st, err)
		}
		ids[d.app] = st.Instances[0].ID
	}
	lb := ts.s.Addr().String()
	for range 5 {
		if v, err := getVersion(ctx, lb, "web.test"); err != nil || v != "web-1" {
			t.Fatalf("GET web.test: %q, %v", v, err)
		}
	}

	adminURL := ts.ready.AdminURL
	anon := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(anon.CloseIdleConnections)
	if code, _ := page(t, ctx, anon, adminURL, "/ui/"); code != http.StatusSeeOther {
		t.Fatalf("the dashboard without a session: %d, want 303 to the login", code)
	}
	c := dashboardLogin(t, ctx, adminURL, ts.token)

	code, all := page(t, ctx, c, adminURL, "/ui/")
	if code != http.StatusOK || !strings.Contains(all, ids["web"]) || !strings.Contains(all, ids["api"]) {
		t.Fatalf("overview: %d, want both apps' instances %v:\n%s", code, ids, all)
	}
	for app, other := range map[string]string{"web": "api", "api": "web"} {
		code, body := page(t, ctx, c, adminURL, "/ui/?app="+app)
		if code != http.StatusOK {
			t.Fatalf("%s's page: %d\n%s", app, code, body)
		}
		row := `data-host="host-a">host-a <small class="zone">zone-host-a</small>`
		if !strings.Contains(body, ids[app]) || !strings.Contains(body, row) {
			t.Errorf("%s's page lacks its instance %s on host-a in zone-host-a:\n%s", app, ids[app], body)
		}
		if strings.Contains(body, ids[other]) || strings.Contains(body, `id="g-`+other+`"`) {
			t.Errorf("%s's page shows %s's group", app, other)
		}
		if !strings.Contains(body, `id="fleet"`) || !strings.Contains(body, "host host-a") {
			t.Errorf("%s's page has no hosts card with host-a's events:\n%s", app, body)
		}
	}
	if code, _ := page(t, ctx, c, adminURL, "/ui/?app=nope"); code != http.StatusNotFound {
		t.Errorf("the page of an unknown app: %d, want 404", code)
	}
	if code, body := page(t, ctx, c, adminURL, "/ui/releases"); code != http.StatusOK || !strings.Contains(body, `id="releases-web"`) ||
		!strings.Contains(body, `id="releases-api"`) {
		t.Errorf("releases: %d, want both apps:\n%s", code, body)
	}
	if code, body := page(t, ctx, c, adminURL, "/ui/instances/"+ids["api"]); code != http.StatusOK || !strings.Contains(body, "api") {
		t.Errorf("api's instance page: %d\n%s", code, body)
	}

	now := time.Now()
	if web := ts.s.dash.series.Summarize(timeseries.Key{Group: "web"}, now, time.Minute); web.Requests < 5 {
		t.Errorf("web's series counted %d requests, want 5", web.Requests)
	}
	if api := ts.s.dash.series.Summarize(timeseries.Key{Group: "api"}, now, time.Minute); api.Requests != 0 {
		t.Errorf("api's series counted %d requests of web's", api.Requests)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ts.token)
	if code, metrics := fetch(t, anon, req); code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, metrics)
	} else {
		checkMetrics(t, metrics)
	}
}

// checkMetrics checks the server's /metrics of TestServerDashboardAndMetrics.
func checkMetrics(t *testing.T, metrics string) {
	t.Helper()
	for _, want := range []string{`shoal_events_pending{app="api"} 0`, `shoal_events_pending{app="web"} 0`,
		`shoal_fleet_hosts{state="ready"} 1`, `shoal_fleet_hosts{state="unreachable"} 0`, `shoal_fleet_instances 2`,
		`shoal_events_dropped_total{app="@fleet"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
}
