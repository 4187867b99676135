package config

import (
	"slices"
	"strings"
	"testing"
)

// TestLongLivedOptions: balancer.long_lived_paths in shoal.yaml and
// long_lived / long_lived_paths on an lb.yaml route reach the balancer's
// routes; a path that is not absolute is refused with its place.
func TestLongLivedOptions(t *testing.T) {
	a, err := Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  long_lived_paths: [/poll, /events/]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Balancer.LongLivedPaths; !slices.Equal(got, []string{"/poll", "/events/"}) {
		t.Errorf("shoal.yaml long_lived_paths = %q", got)
	}
	_, err = Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  long_lived_paths: [/ok, poll]\n"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `shoal.yaml:4:27: balancer.long_lived_paths[1]: must start with /, got "poll"`) {
		t.Errorf("shoal.yaml bad path: %v", err)
	}

	src := "listeners: [{name: web, listen: ':80'}]\nroutes:\n  - {name: r, pool: p, long_lived_paths: [/poll]}\n  - {name: s, path_prefix: /stream, pool: p, long_lived: true}\npools: [{name: p}]\n"
	f, err := LoadLB(writeLB(t, src))
	if err != nil {
		t.Fatal(err)
	}
	rs := f.Balancer.Routes
	if len(rs) != 2 || rs[0].LongLived || !slices.Equal(rs[0].LongLivedPaths, []string{"/poll"}) || !rs[1].LongLived {
		t.Errorf("lb.yaml routes %+v", rs)
	}
	bad := strings.Replace(src, "[/poll]", "[poll]", 1)
	if _, err := LoadLB(writeLB(t, bad)); err == nil || !strings.Contains(err.Error(), `lb.yaml:3:43: routes[0].long_lived_paths[0]: must start with /, got "poll"`) {
		t.Errorf("lb.yaml bad path: %v", err)
	}
}
