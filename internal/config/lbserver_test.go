package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLBServerSection: a node that follows a server has listeners but no
// routes or pools of its own; its url, name and data dir are checked, with
// file:line:col, and relative paths resolve against lb.yaml's folder.
func TestLBServerSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	f, err := ParseLB(path, []byte("listeners: [{name: http, listen: ':80'}]\nserver:\n  url: https://10.0.0.1:7443/\n  join_token_file: token\n  name: lb-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Server
	if s == nil || !slices.Equal(s.URLs, []string{"https://10.0.0.1:7443"}) || s.JoinTokenFile != filepath.Join(dir, "token") || s.Name != "lb-1" ||
		s.DataDir != filepath.Join(dir, ".shoal") || len(f.Balancer.Routes) != 0 || len(f.Balancer.Pools) != 0 {
		t.Fatalf("server section: %+v, balancer %+v", s, f.Balancer)
	}
	for _, c := range []struct{ text, want string }{
		{"listeners: [{name: http, listen: ':80'}]\nserver: {url: 'http://x:1'}\n",
			`lb.yaml:2:15: server.url: must be an https URL`},
		{"listeners: [{name: http, listen: ':80'}]\nserver: {url: 'https://x:1', name: Bad_Name}\n",
			`lb.yaml:2:36: server.name: "Bad_Name" is not a valid name`},
		{"listeners: [{name: http, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\nserver: {url: 'https://x:1'}\n",
			"lb.yaml:2:9: routes: must not be set with server"},
		{"listeners: [{name: http, listen: ':80', routes: [r]}]\nserver: {url: 'https://x:1'}\n",
			"listeners[0].routes[0]: a node that follows a server"},
		{"listeners: [{name: http, listen: ':80'}]\nserver: {url: 'https://x:1', token: x}\n",
			"token"},
	} {
		_, err := ParseLB(path, []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.text, err, c.want)
		}
	}
}
