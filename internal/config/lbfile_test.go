package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

const fullLB = `# every field
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes: [app]
  - name: tls
    listen: ":8443"
    tls:
      - cert: certs/a.pem
        key: certs/a.key
routes:
  - name: app
    host: App.Example.com
    pool: app
  - name: api
    host: "*.example.com"
    path_prefix: /api
    pool: api
pools:
  - name: app
    algorithm: p2c
    targets:
      - addr: 127.0.0.1:3001
      - addr: 127.0.0.1:3002
        weight: 3
    health:
      path: /healthz
      interval: 2s
      timeout: 500ms
      healthy_threshold: 1
      unhealthy_threshold: 4
      statuses: "200,204-299"
      jitter: 0.2
    sticky:
      cookie: shoal_app
      ttl: 1h
      secret_file: sticky.key
      sockjs_prefixes: [/sockjs]
    outlier:
      consecutive_failures: 5
      base_ejection: 10s
      max_ejection: 1m
      max_ejected_percent: 30
    slow_start: 30s
    drain_timeout: 45s
    retries: 0
    try_timeout: 5s
    connect_timeout: 1s
  - name: api
    algorithm: least_requests
    retries: 1
limits:
  header_timeout: 5s
  max_header_bytes: 32KiB
  max_body_bytes: 10MB
  max_conns: 1000
trusted_proxies: [10.0.0.0/8, 192.168.1.7, "::1"]
retry_budget: 0.1
access_log: logs/access.log
admin:
  listen: 127.0.0.1:0
  token_file: /etc/shoal/token
`

// writeLB writes lb.yaml (and a sticky.key) into a temp dir.
func writeLB(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sticky.key"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadLBFull(t *testing.T) {
	path := writeLB(t, fullLB)
	dir := filepath.Dir(path)
	f, err := LoadLB(path)
	if err != nil {
		t.Fatalf("LoadLB: %v", err)
	}
	c := f.Balancer
	if len(c.Listeners) != 2 || c.Listeners[0].Routes[0] != "app" || c.Listeners[1].Addr != ":8443" {
		t.Fatalf("listeners: %+v", c.Listeners)
	}
	if got := c.Listeners[1].TLS[0].CertFile; got != filepath.Join(dir, "certs/a.pem") {
		t.Errorf("cert path not resolved against lb.yaml: %q", got)
	}
	if c.Routes[0].Host != "app.example.com" || c.Routes[0].PathPrefix != "/" || c.Routes[1].PathPrefix != "/api" {
		t.Errorf("routes: %+v", c.Routes)
	}
	app, api := c.Pools[0], c.Pools[1]
	if app.Algorithm != pool.P2C || api.Algorithm != pool.LeastRequests {
		t.Errorf("algorithms: %v %v", app.Algorithm, api.Algorithm)
	}
	if len(app.Targets) != 2 || app.Targets[1] != (pool.TargetSpec{Addr: "127.0.0.1:3002", Weight: 3}) {
		t.Errorf("targets: %+v", app.Targets)
	}
	wantHealth := health.Spec{Path: "/healthz", Interval: 2 * time.Second, Timeout: 500 * time.Millisecond,
		HealthyThreshold: 1, UnhealthyThreshold: 4, Jitter: 0.2,
		Statuses: []health.StatusRange{{Min: 200, Max: 200}, {Min: 204, Max: 299}}}
	if h := app.Health; h == nil || h.Path != wantHealth.Path || h.Interval != wantHealth.Interval ||
		h.Timeout != wantHealth.Timeout || h.HealthyThreshold != 1 || h.UnhealthyThreshold != 4 ||
		h.Jitter != 0.2 || health.FormatStatuses(h.Statuses) != "200,204-299" {
		t.Errorf("health: %+v", app.Health)
	}
	if api.Health != nil {
		t.Errorf("api pool has a health check it did not ask for")
	}
	st := app.Sticky
	if st.Cookie != "shoal_app" || st.TTL != time.Hour || string(st.Secret) != "0123456789abcdef0123456789abcdef" || st.SockJSPrefixes[0] != "/sockjs" {
		t.Errorf("sticky: %+v", st)
	}
	if app.Outlier != (pool.Outlier{ConsecutiveFailures: 5, BaseEjection: 10 * time.Second, MaxEjection: time.Minute, MaxEjectedPercent: 30}) {
		t.Errorf("outlier: %+v", app.Outlier)
	}
	if app.SlowStart != 30*time.Second || app.DrainTimeout != 45*time.Second || app.TryTimeout != 5*time.Second || app.ConnectTimeout != time.Second {
		t.Errorf("pool durations: %+v", app)
	}
	if app.Retries != -1 || api.Retries != 1 {
		t.Errorf("retries: file 0 must become -1 (none), 1 stays 1; got %d, %d", app.Retries, api.Retries)
	}
	if c.Limits.HeaderTimeout != 5*time.Second || c.Limits.MaxHeaderBytes != 32<<10 || c.Limits.MaxBodyBytes != 10_000_000 || c.Limits.MaxConns != 1000 {
		t.Errorf("limits: %+v", c.Limits)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if len(c.TrustedProxies) != 3 || c.TrustedProxies[0] != want[0] || c.TrustedProxies[1] != want[1] || c.TrustedProxies[2] != want[2] {
		t.Errorf("trusted proxies: %v", c.TrustedProxies)
	}
	if c.RetryBudget != 0.1 {
		t.Errorf("retry budget %v", c.RetryBudget)
	}
	if f.AccessLog != filepath.Join(dir, "logs/access.log") {
		t.Errorf("access log %q", f.AccessLog)
	}
	if f.Admin != (AdminConfig{Addr: "127.0.0.1:0", TokenFile: "/etc/shoal/token"}) {
		t.Errorf("admin %+v", f.Admin)
	}
}

func TestLoadLBMinimalDefaults(t *testing.T) {
	path := writeLB(t, "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n")
	f, err := LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	// No admin section: no TCP listener, a Unix socket in the data directory.
	if f.Admin.Addr != "" || f.Admin.Socket != filepath.Join(filepath.Dir(path), ".shoal", "admin.sock") ||
		f.Admin.TokenFile != filepath.Join(filepath.Dir(path), ".shoal", "admin.token") {
		t.Errorf("admin defaults: %+v", f.Admin)
	}
	p := f.Balancer.Pools[0]
	if p.Algorithm != pool.RoundRobin || p.Retries != 0 || p.Health != nil || p.Sticky.Cookie != "" || len(p.Targets) != 0 {
		t.Errorf("pool defaults: %+v", p)
	}
	if f.AccessLog != "" {
		t.Errorf("access log on by default: %q", f.AccessLog)
	}
	w, c, err := f.OpenAccessLog()
	if err != nil || w != nil {
		t.Errorf("OpenAccessLog off: %v %v", w, err)
	}
	c.Close()
}

func TestLoadLBReportsEveryProblem(t *testing.T) {
	src := `listeners:
  - name: web
    listen: nonsense
    routes: [nope]
  - name: web
    listen: 127.0.0.1:99999
routes:
  - name: r
    path_prefix: api
    pool: missing
  - name: r2
    host: "bad host"
    pool: p
pools:
  - name: p
    algorithm: random
  - name: p
  - name: q
    targets:
      - addr: 127.0.0.1
      - addr: 127.0.0.1:1
        weight: 300
      - addr: 127.0.0.1:1
    health:
      healthy_threshold: 0
      interval: 1s
      timeout: 2s
      statuses: "99"
    sticky:
      cookie: sid
    outlier:
      base_ejection: -1s
      max_ejected_percent: 101
trusted_proxies: [10.0.0.0/33, banana]
retry_budget: 2
`
	_, err := ParseLB("lb.yaml", []byte(src))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("want Problems, got %v", err)
	}
	if strings.Contains(err.Error(), "algorithm") {
		// A decode problem (unknown algorithm) is reported alone first.
		for _, want := range []string{`lb.yaml:16:16: pools[0].algorithm: unknown balancing algorithm "random"`, `lb.yaml:28:17: pools[2].health.statuses: invalid status "99"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("missing %q in:\n%v", want, err)
			}
		}
	}
	// Without the decode problems, every validation problem shows at once.
	src = strings.Replace(src, "algorithm: random", "algorithm: p2c", 1)
	src = strings.Replace(src, `statuses: "99"`, `statuses: "200"`, 1)
	_, err = ParseLB("lb.yaml", []byte(src))
	wants := []string{
		`lb.yaml:3:13: listeners[0].listen: invalid address "nonsense"`,
		`lb.yaml:4:14: listeners[0].routes[0]: unknown route "nope"`,
		`lb.yaml:5:11: listeners[1].name: duplicate listener name "web"`,
		`lb.yaml:6:13: listeners[1].listen: invalid port`,
		`lb.yaml:9:18: routes[0].path_prefix: must start with /`,
		`lb.yaml:10:11: routes[0].pool: unknown pool "missing"`,
		`lb.yaml:12:11: routes[1].host: invalid host "bad host"`,
		`lb.yaml:17:11: pools[1].name: duplicate pool name "p"`,
		`lb.yaml:20:15: pools[2].targets[0].addr: invalid address "127.0.0.1"`,
		`lb.yaml:22:17: pools[2].targets[1].weight: must be between 1 and 256`,
		`lb.yaml:23:15: pools[2].targets[2].addr: duplicate target "127.0.0.1:1"`,
		`lb.yaml:25:26: pools[2].health.healthy_threshold: must be at least 1`,
		`lb.yaml:27:16: pools[2].health.timeout: must be at most interval`,
		`lb.yaml:30:7: pools[2].sticky.secret_file: is required with cookie`,
		`lb.yaml:32:22: pools[2].outlier.base_ejection: must not be negative`,
		`lb.yaml:33:28: pools[2].outlier.max_ejected_percent: must be between 1 and 100`,
		`lb.yaml:34:19: trusted_proxies[0]: invalid CIDR "10.0.0.0/33"`,
		`lb.yaml:34:32: trusted_proxies[1]: invalid address "banana"`,
		`lb.yaml:35:15: retry_budget: must be between 0 and 1`,
	}
	if !errors.As(err, &probs) {
		t.Fatalf("want Problems, got %v", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing problem %q", w)
		}
	}
	if len(probs) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%v", len(probs), len(wants), err)
	}
}

func TestLoadLBStickySecretProblems(t *testing.T) {
	base := "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools:\n  - name: p\n    sticky:\n      cookie: sid\n      secret_file: %s\n"
	path := writeLB(t, strings.Replace(base, "%s", "missing.key", 1))
	if _, err := LoadLB(path); err == nil || !strings.Contains(err.Error(), "read sticky secret") {
		t.Errorf("missing secret file: %v", err)
	}
	dir := filepath.Dir(path)
	os.WriteFile(filepath.Join(dir, "short.key"), []byte("tooshort\n"), 0o600)
	os.WriteFile(path, []byte(strings.Replace(base, "%s", "short.key", 1)), 0o600)
	if _, err := LoadLB(path); err == nil || !strings.Contains(err.Error(), "at least 16 are required") {
		t.Errorf("short secret: %v", err)
	}
	os.WriteFile(path, []byte(strings.Replace(base, "%s", "sticky.key", 1)+"      ttl: -1s\n      sockjs_prefixes: [sockjs]\n"), 0o600)
	_, err := LoadLB(path)
	if err == nil || !strings.Contains(err.Error(), "ttl: must not be negative") || !strings.Contains(err.Error(), "sockjs_prefixes[0]: must start with /") {
		t.Errorf("ttl and prefix: %v", err)
	}
}

func TestLoadLBStructuralProblems(t *testing.T) {
	for name, src := range map[string]string{
		"empty":       "",
		"unknown key": "listeners: []\nbogus: 1\n",
		"bare number": "pools: [{name: p, drain_timeout: 30}]\n",
		"nothing":     "admin: {listen: '127.0.0.1:9'}\n",
		"dup route":   "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}, {name: b, pool: p, path_prefix: /}]\npools: [{name: p}]\n",
		"uri>header":  "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p}]\nlimits: {max_header_bytes: 1KiB, max_uri_bytes: 2KiB}\n",
		"line>header": "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p}]\nlimits: {max_header_bytes: 1KiB, max_request_line: 2KiB}\n",
		"tiny header": "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p}]\nlimits: {max_header_bytes: 512}\n",
	} {
		if _, err := ParseLB("lb.yaml", []byte(src)); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "lb.yaml:") {
			t.Errorf("%s: problem without position: %v", name, err)
		}
	}
}

func TestExampleLBFileLoads(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "lb", "lb.yaml")
	f, err := LoadLB(path)
	if err != nil {
		t.Fatalf("examples/lb/lb.yaml: %v", err)
	}
	if len(f.Balancer.Pools) == 0 || len(f.Balancer.Pools[0].Targets) != 2 {
		t.Fatalf("example should have a pool with two targets: %+v", f.Balancer.Pools)
	}
}

func FuzzLoadLB(f *testing.F) {
	f.Add(fullLB)
	f.Add("listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p, targets: [{addr: 'a:1'}]}]\n")
	f.Add("pools: [{name: p, health: {statuses: '200-', interval: 1s}}]\n")
	f.Add("trusted_proxies: ['::/0', 1.2.3.4]\nretry_budget: .5\n")
	f.Add("listeners: &a [{name: x}]\nroutes: *a\n")
	for _, r := range lbRenames {
		f.Add(r.old)
		f.Add(r.both)
	}
	f.Fuzz(func(t *testing.T, src string) {
		lf, err := ParseLB("f.yaml", []byte(src))
		if err != nil {
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			return
		}
		// A file that loads has what the balancer needs.
		if len(lf.Balancer.Listeners) == 0 || len(lf.Balancer.Routes) == 0 || len(lf.Balancer.Pools) == 0 {
			t.Fatalf("accepted config without listeners, routes or pools: %+v", lf.Balancer)
		}
		if (lf.Admin.Addr == "") == (lf.Admin.Socket == "") || lf.Admin.TokenFile == "" {
			t.Fatalf("admin defaults missing: %+v", lf.Admin)
		}
		for _, w := range lf.Warnings {
			if w.File != "f.yaml" || w.Pos.Line < 1 || !strings.Contains(w.Msg, "deprecated") {
				t.Fatalf("malformed warning %+v", w)
			}
		}
	})
}

func TestOpenAccessLogAppendsToFile(t *testing.T) {
	path := writeLB(t, "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\naccess_log: access.log\n")
	f, err := LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"one\n", "two\n"} {
		w, c, err := f.OpenAccessLog()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, line)
		c.Close()
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "access.log"))
	if err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("access log = %q, %v", b, err)
	}
	for _, s := range []string{"stdout", "stderr", "off"} {
		f, err := ParseLB("lb.yaml", []byte("listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\naccess_log: "+s+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		w, _, err := f.OpenAccessLog()
		if err != nil || (s == "off") != (w == nil) {
			t.Errorf("access_log %s: writer %v, err %v", s, w, err)
		}
	}
}

func TestLoadLBFastPathSwitch(t *testing.T) {
	base := "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n"
	for _, c := range []struct {
		extra   string
		disable bool
	}{
		{"", false},
		{"limits: {fast_path: true}\n", false},
		{"limits: {fast_path: false}\n", true},
	} {
		f, err := ParseLB("lb.yaml", []byte(base+c.extra))
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if got := f.Balancer.Limits.DisableFastPath; got != c.disable {
			t.Errorf("%q: DisableFastPath = %v, want %v", c.extra, got, c.disable)
		}
	}
	if _, err := ParseLB("lb.yaml", []byte(base+"limits: {fast_path: maybe}\n")); err == nil || !strings.Contains(err.Error(), "lb.yaml:4:") {
		t.Errorf("fast_path: maybe: want a positioned error, got %v", err)
	}
}

// TestLoadLBHealthTimeoutEqualsInterval: a probe timeout equal to the
// interval is accepted (it used to be rejected); a longer one is not.
func TestLoadLBHealthTimeoutEqualsInterval(t *testing.T) {
	const src = "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p, health: {interval: 2s, timeout: %s}}]\n"
	f, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(src, "2s")))
	if err != nil {
		t.Fatalf("timeout = interval: %v", err)
	}
	if h := f.Balancer.Pools[0].Health; h.Timeout != 2*time.Second || h.Interval != 2*time.Second {
		t.Fatalf("health spec %+v", h)
	}
	if _, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(src, "3s"))); err == nil || !strings.Contains(err.Error(), "health.timeout: must be at most interval") {
		t.Fatalf("timeout > interval: %v", err)
	}
}

// TestLoadLBTryTimeoutOff: try_timeout takes off (or 0) for no timeout.
func TestLoadLBTryTimeoutOff(t *testing.T) {
	const src = "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p, try_timeout: %s}]\n"
	for in, want := range map[string]time.Duration{"off": -1, "0": -1, "5s": 5 * time.Second} {
		f, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(src, in)))
		if err != nil {
			t.Fatalf("try_timeout %s: %v", in, err)
		}
		if got := f.Balancer.Pools[0].TryTimeout; got != want {
			t.Errorf("try_timeout %s: %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]string{"-1s": "lb.yaml:3:32: pools[0].try_timeout: must not be negative", "5": "pools[0].try_timeout", "never": "pools[0].try_timeout"} {
		if _, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(src, in))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("try_timeout %s: %v, want %q", in, err, want)
		}
	}
}

// TestLoadLBAdminSocket: admin.socket sets the socket's path; it cannot
// go with admin.listen, and a path too long for a Unix socket is refused.
func TestLoadLBAdminSocket(t *testing.T) {
	const base = "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p}]\n"
	f, err := ParseLB("/srv/lb/lb.yaml", []byte(base+"admin: {socket: run/admin.sock}\n"))
	if err != nil || f.Admin.Socket != "/srv/lb/run/admin.sock" || f.Admin.Addr != "" {
		t.Fatalf("admin.socket: %+v %v", f, err)
	}
	f, err = ParseLB("/srv/lb/lb.yaml", []byte(base+"admin: {listen: '127.0.0.1:9090'}\n"))
	if err != nil || f.Admin.Socket != "" || f.Admin.Addr != "127.0.0.1:9090" {
		t.Fatalf("admin.listen: %+v %v", f, err)
	}
	_, err = ParseLB("lb.yaml", []byte(base+"admin: {listen: '127.0.0.1:9090', socket: a.sock}\n"))
	if err == nil || !strings.Contains(err.Error(), "lb.yaml:4:43: admin.socket: set either admin.listen") {
		t.Fatalf("both: %v", err)
	}
	long := "/" + strings.Repeat("d", 120) + "/lb.yaml"
	if _, err = ParseLB(long, []byte(base)); err == nil || !strings.Contains(err.Error(), "more than the 107 a Unix socket allows") {
		t.Fatalf("long default path: %v", err)
	}
}
