package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
)

const token = "s3cret-token"

type env struct {
	t   *testing.T
	src *demo.Source
	ui  *dashboard.Handler
	srv *httptest.Server
	now *clock
}

// clock is a settable clock for the dashboard's sessions and limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newEnv(t *testing.T, tlsServer bool) *env {
	t.Helper()
	c := &clock{t: time.Now()}
	src := demo.New(demo.Options{Seed: 1, StartTicks: 1})
	ui := dashboard.New(dashboard.Options{Token: token, Source: src, Now: c.Now, Interval: 20 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(func() {
		ui.Close()
		srv.Close()
	})
	return &env{t: t, src: src, ui: ui, srv: srv, now: c}
}

// client returns a client that keeps cookies and does not follow
// redirects.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func (e *env) post(c *http.Client, path string, form url.Values, origin string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *env) get(c *http.Client, path string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// login logs in and returns the client and the session's CSRF token.
func (e *env) login() (*http.Client, string) {
	e.t.Helper()
	c := e.client()
	resp := e.post(c, "/ui/login", url.Values{"token": {token}, "next": {"/ui/releases"}}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/releases" {
		e.t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body := e.get(c, "/ui/")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatal("no CSRF token on the overview page")
	}
	return c, m[1]
}

func TestEverythingNeedsASession(t *testing.T) {
	e := newEnv(t, false)
	c := e.client()
	for _, p := range []string{"/ui/", "/ui/timeline?kind=deploy", "/ui/releases", "/ui/instances/web-1", "/ui/slow", "/ui/releases/web/rollback?version=1"} {
		resp, _ := e.get(c, p)
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("GET %s without session: %d, want 303", p, resp.StatusCode)
		}
		if loc := resp.Header.Get("Location"); loc != "/ui/login?next="+url.QueryEscape(p) {
			t.Errorf("GET %s redirects to %q", p, loc)
		}
	}
	for _, p := range []string{"/ui/events?view=overview", "/ui/instances/web-1/logs", "/ui/chart/rps.svg?app=web"} {
		if resp, _ := e.get(c, p); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without session: %d, want 401", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/ui/logout", "/ui/releases/web/rollback"} {
		resp := e.post(c, p, url.Values{"version": {"1"}}, e.srv.URL)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without session: %d, want 401", p, resp.StatusCode)
		}
	}
	// The login page and static assets are public.
	for _, p := range []string{"/ui/login", "/ui/static/app.js", "/ui/static/style.css", "/ui/static/logo.svg"} {
		if resp, _ := e.get(c, p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", p, resp.StatusCode)
		}
	}
	resp, body := e.get(c, "/ui/login")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	if !strings.Contains(body, `type="password"`) {
		t.Error("login page has no password field")
	}
}

func TestLoginChecksTokenOriginAndRate(t *testing.T) {
	e := newEnv(t, false)
	c := e.client()
	resp := e.post(c, "/ui/login", url.Values{"token": {"wrong"}}, e.srv.URL)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("wrong token: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	if !strings.Contains(string(body), "not the admin token") {
		t.Error("wrong token page does not say why")
	}
	resp = e.post(c, "/ui/login", url.Values{"token": {token}}, "http://evil.example")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d, want 403", resp.StatusCode)
	}
	// 5 attempts per client, then 429 even with the right token.
	for range 4 {
		e.post(c, "/ui/login", url.Values{"token": {"wrong"}}, e.srv.URL).Body.Close()
	}
	resp = e.post(c, "/ui/login", url.Values{"token": {token}}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("6th attempt: %d, Retry-After %q; want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.now.Add(11 * time.Second)
	resp = e.post(c, "/ui/login", url.Values{"token": {token}, "next": {"//evil.example/"}}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login after the wait: %d to %q, want 303 to /ui/ (no open redirect)", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestSessionCookieFlags(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		e := newEnv(t, tlsOn)
		c := e.client()
		resp := e.post(c, "/ui/login", url.Values{"token": {token}}, e.srv.URL)
		resp.Body.Close()
		cookies := resp.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("tls=%v: %d cookies", tlsOn, len(cookies))
		}
		ck := cookies[0]
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui" || ck.Secure != tlsOn || len(ck.Value) < 64 {
			t.Errorf("tls=%v: cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui, Secure=%v, a long random value", tlsOn, ck, tlsOn)
		}
		if ck.MaxAge <= 0 || ck.MaxAge > 24*3600 {
			t.Errorf("cookie MaxAge %d", ck.MaxAge)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d", resp.StatusCode)
	}
	e.now.Add(13 * time.Hour)
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("overview after 13h: %d, want 303 to login", resp.StatusCode)
	}
}

func TestActionsNeedCSRFAndSameOrigin(t *testing.T) {
	e := newEnv(t, false)
	c, csrf := e.login()
	cases := []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no csrf", url.Values{"version": {"2"}}, e.srv.URL},
		{"wrong csrf", url.Values{"version": {"2"}, "csrf": {strings.Repeat("0", 64)}}, e.srv.URL},
		{"other origin", url.Values{"version": {"2"}, "csrf": {csrf}}, "https://evil.example"},
		{"no origin", url.Values{"version": {"2"}, "csrf": {csrf}}, ""},
	}
	for _, tc := range cases {
		resp := e.post(c, "/ui/releases/web/rollback", tc.form, tc.origin)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, resp.StatusCode)
		}
	}
	resp := e.post(c, "/ui/logout", url.Values{}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without csrf: %d, want 403", resp.StatusCode)
	}
	groups, _ := e.src.Groups(context.Background())
	for _, g := range groups {
		if g.Deploy != nil && g.Deploy.Active {
			t.Fatalf("a refused request started a deploy: %+v", g.Deploy)
		}
	}

	// The confirm page, then the real rollback.
	resp, body := e.get(c, "/ui/releases/web/rollback?version=2")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Roll back web to v2?") || !strings.Contains(body, `value="`+csrf+`"`) {
		t.Fatalf("confirm page: %d\n%s", resp.StatusCode, body)
	}
	resp = e.post(c, "/ui/releases/web/rollback", url.Values{"version": {"2"}, "csrf": {csrf}}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/releases#app-web" {
		t.Fatalf("rollback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = e.get(c, "/ui/releases")
	if !strings.Contains(body, "Rollback of web to release 2 started.") || !strings.Contains(body, "Rolling back v3 → v2") {
		t.Fatalf("releases page after rollback lacks the flash or the progress:\n%s", body)
	}
	// A second rollback while the first runs is a conflict, shown on the page.
	resp = e.post(c, "/ui/releases/web/rollback", url.Values{"version": {"1"}, "csrf": {csrf}}, e.srv.URL)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "in progress") {
		t.Fatalf("rollback during a deploy: %d\n%s", resp.StatusCode, b)
	}
	// Unknown release and bad version.
	if resp, _ := e.get(c, "/ui/releases/web/rollback?version=99"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown version: %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.get(c, "/ui/releases/web/rollback?version=x"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad version: %d, want 400", resp.StatusCode)
	}
	// Logout ends the session.
	resp = e.post(c, "/ui/logout", url.Values{"csrf": {csrf}}, e.srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("overview after logout: %d, want 303", resp.StatusCode)
	}
}

func TestPagesRender(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	e.src.Step()
	cases := map[string][]string{
		"/ui/":                 {`data-instance="web-3"`, `data-state="in_service"`, "Balancer targets", `/ui/chart/latency.svg?app=web`, "p99 latency <small>last 10 s</small>", "Held streams", `data-held-open="`, "20 s steps"},
		"/ui/timeline":         {"<select", `value="deploy"`},
		"/ui/releases":         {"v3", `data-rollback="2"`, "running v3"},
		"/ui/instances/web-3":  {"Instance web-3", `data-log-src="/ui/instances/web-3/logs?lines=200"`, "/ui/chart/cpu.svg?instance=web-3"},
		"/ui/slow":             {"Latency by route", "Slowest recent requests", "Client round trip <b>", "network (round trip + transfer)"},
		"/ui/slow?window=1h":   {`<option value="1h" selected>`},
		"/ui/timeline?kind=xx": {"No events match."},
	}
	for path, wants := range cases {
		resp, body := e.get(c, path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			continue
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", path, resp.Header.Get("Cache-Control"))
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: page lacks %q", path, w)
			}
		}
	}
	if resp, body := e.get(c, "/ui/instances/nope"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "404") {
		t.Errorf("unknown instance: %d", resp.StatusCode)
	}
	if resp, _ := e.get(c, "/ui/no-such-page"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown page: %d", resp.StatusCode)
	}
}

func TestChartsAreWellFormedSVG(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	for range 3 {
		e.src.Step()
	}
	for _, p := range []string{
		"/ui/chart/rps.svg?app=web", "/ui/chart/errors.svg?app=web", "/ui/chart/latency.svg?app=web&window=15m",
		"/ui/chart/latency.svg?app=web&route=GET+%2F", "/ui/chart/rps.svg?app=nothing-here",
		"/ui/chart/cpu.svg?instance=web-3", "/ui/chart/rss.svg?instance=web-3",
	} {
		resp, body := e.get(c, p)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
			continue
		}
		checkXML(t, p, body)
	}
	for p, want := range map[string]int{
		"/ui/chart/pie.svg?app=web":           http.StatusNotFound,
		"/ui/chart/rps.png?app=web":           http.StatusNotFound,
		"/ui/chart/rps.svg":                   http.StatusBadRequest,
		"/ui/chart/cpu.svg?app=web":           http.StatusBadRequest,
		"/ui/chart/rps.svg?app=web&window=2h": http.StatusBadRequest,
	} {
		if resp, _ := e.get(c, p); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", p, resp.StatusCode, want)
		}
	}
}

// checkXML parses doc fully and checks that its root is an svg element.
func checkXML(t *testing.T, name, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", name, root)
	}
}

// sseReader reads events from a stream.
type sseReader struct {
	sc *bufio.Scanner
}

type sseEvent struct{ id, name, data string }

func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
	if err := r.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// until reads events until match accepts one; it fails at EOF (the
// request's context bounds the wait).
func (r *sseReader) until(t *testing.T, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	for range 10000 {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(ev) {
			return ev
		}
	}
	t.Fatalf("waiting for %s: too many events", what)
	return sseEvent{}
}

func (e *env) stream(c *http.Client, path string) (*sseReader, func()) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseReader{sc: bufio.NewScanner(resp.Body)}, func() { cancel(); resp.Body.Close() }
}

func TestEventStreamSendsFragmentsAndEvents(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	evs, _ := e.src.Events(context.Background(), 0, 0)
	var last uint64
	if len(evs) > 0 {
		last = evs[len(evs)-1].Seq
	}
	r, stop := e.stream(c, "/ui/events?view=overview&after="+itoa(last))
	defer stop()
	ev := r.until(t, "the web group fragment", func(ev sseEvent) bool {
		return ev.name == "fragment" && strings.Contains(ev.data, `"id":"group-web"`)
	})
	var frag struct{ ID, HTML string }
	if err := json.Unmarshal([]byte(ev.data), &frag); err != nil || !strings.Contains(frag.HTML, `data-instance="web-3"`) {
		t.Fatalf("fragment %v: %.300s", err, frag.HTML)
	}
	if err := e.src.Kill("web-3"); err != nil {
		t.Fatal(err)
	}
	// The re-rendered group and the event come in either order.
	var sawEvent, sawFragment bool
	r.until(t, "the kill event and the failed state", func(ev sseEvent) bool {
		if ev.name == "event" && strings.Contains(ev.data, "web-3") && strings.Contains(ev.data, "failed") && ev.id != "" {
			sawEvent = true
		}
		if ev.name == "fragment" && strings.Contains(ev.data, `data-instance=\"web-3\" data-state=\"failed\"`) {
			sawFragment = true
		}
		return sawEvent && sawFragment
	})
	// The simulation replaces it; the stream shows the replacement.
	e.src.Step()
	r.until(t, "the replace event", func(ev sseEvent) bool { return ev.name == "event" && strings.Contains(ev.data, `"kind":"replace"`) })
}

func TestLogTailStream(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	e.src.Step()
	r, stop := e.stream(c, "/ui/instances/web-3/logs?lines=5")
	defer stop()
	r.until(t, "a log line", func(ev sseEvent) bool { return ev.name == "log" && strings.Contains(ev.data, "req=") })
	if err := e.src.Kill("web-3"); err != nil {
		t.Fatal(err)
	}
	r.until(t, "the exit line", func(ev sseEvent) bool { return ev.name == "log" && strings.Contains(ev.data, "signal: killed") })
	if resp, _ := e.get(c, "/ui/instances/nope/logs"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("log of an unknown instance: %d", resp.StatusCode)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	r, stop := e.stream(c, "/ui/events?view=releases")
	defer stop()
	r.until(t, "a fragment", func(ev sseEvent) bool { return ev.name == "fragment" })
	lr, lstop := e.stream(c, "/ui/instances/web-3/logs")
	defer lstop()
	lr.until(t, "a log line", func(ev sseEvent) bool { return ev.name == "log" })
	done := make(chan struct{})
	go func() { e.ui.Close(); close(done) }()
	for _, rd := range []*sseReader{r, lr} {
		for {
			if _, err := rd.next(); err != nil {
				break
			}
		}
	}
	<-done
	if resp, _ := e.get(c, "/ui/events?view=overview"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream after Close: %d, want 503", resp.StatusCode)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestAppPageShowsOneGroup: the overview shows every group, each titled
// with a link to its app's page; /ui/?app=NAME shows that group alone and
// its live stream asks for that app only; an unknown app is 404.
func TestAppPageShowsOneGroup(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	_, all := e.get(c, "/ui/")
	for _, app := range []string{"api", "web"} {
		if !strings.Contains(all, `id="group-`+app+`"`) || !strings.Contains(all, `<a href="/ui/?app=`+app+`">`+app+`</a>`) {
			t.Errorf("overview lacks %s's group with a link to its page", app)
		}
	}
	resp, body := e.get(c, "/ui/?app=web")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="group-web"`) || strings.Contains(body, `id="group-api"`) {
		t.Errorf("web's page: %d, want web's group alone:\n%s", resp.StatusCode, body)
	}
	if !regexp.MustCompile(`data-live="after=\d+&amp;app=web&amp;view=overview"`).MatchString(body) {
		t.Errorf("web's page does not stream web's updates alone:\n%s", body)
	}
	if resp, _ := e.get(c, "/ui/?app=nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown app's page: %d, want 404", resp.StatusCode)
	}
}
