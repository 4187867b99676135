package config

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/pool"
)

// TestAppBalancerConfig: shoal.yaml's balancer section becomes one
// listener, one route "/" and one pool named after the app, with the
// section's algorithm, timings, long-lived paths and sticky settings; the
// key signs the cookie only when there is one.
func TestAppBalancerConfig(t *testing.T) {
	dir := t.TempDir()
	a, err := Parse("shoal.yaml", []byte("app: web\nrun: {command: x}\nbalancer:\n  listen: '127.0.0.1:0'\n  algorithm: least_requests\n  slow_start: 5s\n  drain_timeout: 3s\n  long_lived_paths: [/poll]\n  sticky: {cookie: pin, ttl: 1m, sockjs_prefixes: [/sockjs]}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Balancer.NeedsStickyKey() {
		t.Fatal("a sticky cookie needs no key")
	}
	if got := StickyKeyName("web"); got != "sticky-web" {
		t.Errorf("StickyKeyName = %q; the stored key's name must not change (pins survive upgrades)", got)
	}
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	key := []byte("0123456789abcdef0123456789abcdef")
	c := a.BalancerConfig(key, log)
	if len(c.Listeners) != 1 || c.Listeners[0].Name != UpListener || c.Listeners[0].Addr != "127.0.0.1:0" || len(c.Listeners[0].TLS) != 0 {
		t.Errorf("listeners = %+v", c.Listeners)
	}
	if len(c.Routes) != 1 || c.Routes[0].Name != "web" || c.Routes[0].PathPrefix != "/" || c.Routes[0].Pool != "web" ||
		!slices.Equal(c.Routes[0].LongLivedPaths, []string{"/poll"}) {
		t.Errorf("routes = %+v", c.Routes)
	}
	if len(c.Pools) != 1 {
		t.Fatalf("pools = %+v", c.Pools)
	}
	p := c.Pools[0]
	if p.Name != "web" || p.Algorithm != pool.LeastRequests || p.SlowStart.Seconds() != 5 || p.DrainTimeout.Seconds() != 3 ||
		len(p.Targets) != 0 || p.Health != nil {
		t.Errorf("pool = %+v", p)
	}
	if p.Sticky.Cookie != "pin" || p.Sticky.TTL.Minutes() != 1 || !bytes.Equal(p.Sticky.Secret, key) ||
		!slices.Equal(p.Sticky.SockJSPrefixes, []string{"/sockjs"}) {
		t.Errorf("sticky = %+v", p.Sticky)
	}
	if c.Logger != log {
		t.Error("logger not passed on")
	}

	// SockJS affinity alone needs no key, and a key given anyway is not used.
	a, err = Parse("shoal.yaml", []byte("app: web\nrun: {command: x}\nbalancer:\n  sticky: {sockjs_prefixes: [/sockjs]}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balancer.NeedsStickyKey() {
		t.Error("SockJS affinity alone needs a key")
	}
	if s := a.BalancerConfig(key, log).Pools[0].Sticky; s.Secret != nil || s.Cookie != "" || len(s.SockJSPrefixes) != 1 {
		t.Errorf("sticky = %+v", s)
	}
	if c := a.BalancerConfig(nil, log); c.Listeners[0].Addr != DefaultBalancerListen || c.Pools[0].Algorithm != pool.RoundRobin {
		t.Errorf("defaults: listener %q algorithm %v", c.Listeners[0].Addr, c.Pools[0].Algorithm)
	}
}

// TestAppRoutes: balancer.hosts and balancer.path become one route per
// host (lowercased) for `shoal server`; without hosts the app is the
// catch-all; BalancerConfig (shoal up) ignores both and serves every host.
func TestAppRoutes(t *testing.T) {
	dir := t.TempDir()
	a, err := Parse("shoal.yaml", []byte("app: web\nrun: {command: x}\nbalancer:\n  hosts: [Web.Example.com, '*.web.example.com']\n  path: /api\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	got := a.Routes()
	if len(got) != 2 || got[0].Host != "web.example.com" || got[1].Host != "*.web.example.com" ||
		got[0].PathPrefix != "/api" || got[0].Pool != "web" || got[0].Name == got[1].Name {
		t.Fatalf("Routes = %+v", got)
	}
	if c := a.BalancerConfig(nil, nil); len(c.Routes) != 1 || c.Routes[0].Host != "" || c.Routes[0].PathPrefix != "/" {
		t.Fatalf("shoal up's routes = %+v, want every host and path", c.Routes)
	}
	b, err := Parse("shoal.yaml", []byte("app: api\nrun: {command: x}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Routes(); len(got) != 1 || got[0].Host != "" || got[0].PathPrefix != "/" || got[0].Name != "api" {
		t.Fatalf("catch-all Routes = %+v", got)
	}
}

// TestAppRoutesProblems: every bad host and path is reported with its
// place in the file.
func TestAppRoutesProblems(t *testing.T) {
	_, err := Parse("shoal.yaml", []byte("app: web\nrun: {command: x}\nbalancer:\n  hosts: [ok.example.com, 'bad host', '*.', OK.example.com, '']\n  path: api\n"), t.TempDir())
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`shoal.yaml:4:27: balancer.hosts[1]: "bad host" is not a host name`,
		`shoal.yaml:4:39: balancer.hosts[2]: "*." is not a host name`,
		`shoal.yaml:4:45: balancer.hosts[3]: "OK.example.com" is listed already as balancer.hosts[0]`,
		`shoal.yaml:4:61: balancer.hosts[4]: "" is not a host name`,
		`shoal.yaml:5:9: balancer.path: must start with /, got "api"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
