package config

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/lb"
)

// TestCacheOptions: balancer.cache in shoal.yaml and routes[].cache in
// lb.yaml are the same keys with the same result; absent means the
// balancer's defaults; bad values are refused with file:line:col.
func TestCacheOptions(t *testing.T) {
	const keys = "{enabled: true, max_size: 32MiB, max_entry_size: 4MiB}"
	want := lb.Cache{MaxBytes: 32 << 20, MaxEntryBytes: 4 << 20}
	a, err := Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  cache: "+keys+"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.BalancerConfig(nil, nil).Routes[0].Cache; got != want {
		t.Errorf("shoal.yaml: %+v, want %+v", got, want)
	}
	a, err = Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  cache: {enabled: false}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.BalancerConfig(nil, nil).Routes[0].Cache; got != (lb.Cache{Off: true}) {
		t.Errorf("shoal.yaml off: %+v", got)
	}

	src := "listeners: [{name: web, listen: ':80'}]\nroutes:\n  - {name: r, pool: p, cache: " + keys + "}\n  - {name: s, path_prefix: /x, pool: p}\npools: [{name: p}]\n"
	f, err := LoadLB(writeLB(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Balancer.Routes[0].Cache; got != want {
		t.Errorf("lb.yaml: %+v, want %+v", got, want)
	}
	if got := f.Balancer.Routes[1].Cache; got != (lb.Cache{}) {
		t.Errorf("lb.yaml default: %+v", got)
	}
	for _, tc := range []struct{ keys, err string }{
		{"{max_size: 1MiB, max_entry_size: 2MiB}", "routes[0].cache.max_entry_size: must not be more than max_size"},
		{"{max_size: -1}", "routes[0].cache.max_size"},
		{"{enabled: maybe}", "routes[0].cache.enabled: expected true or false"},
		{"{ttl: 1h}", "routes[0].cache.ttl"},
	} {
		_, err := LoadLB(writeLB(t, strings.Replace(src, keys, tc.keys, 1)))
		if err == nil || !strings.Contains(err.Error(), "lb.yaml:3:") || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("lb.yaml %s: %v, want %q at line 3", tc.keys, err, tc.err)
		}
	}
}
