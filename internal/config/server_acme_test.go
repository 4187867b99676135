package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestServerACME(t *testing.T) {
	dir := t.TempDir()
	cf, _, _ := testenv.WriteSelfSigned(t, dir, "localhost")
	if err := os.Rename(cf, filepath.Join(dir, "root.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "server.yaml")
	s, err := ParseServer(path, []byte(`fleet: {listen: "127.0.0.1:0"}
balancer:
  listen: "127.0.0.1:0"
  tls_listen: "127.0.0.1:0"
  acme:
    email: ops@example.com
    ca_root: root.pem
    hosts: [App.Example.com., www.example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Balancer.ACME
	if a == nil || a.Directory != DefaultACMEDirectory || a.CARoot != filepath.Join(dir, "root.pem") || a.Roots() == nil ||
		strings.Join(a.Hosts, ",") != "app.example.com,www.example.com" || s.Balancer.TLSListen != "127.0.0.1:0" {
		t.Fatalf("acme: %+v, tls_listen %q", a, s.Balancer.TLSListen)
	}
	if s, err := ParseServer(path, []byte("fleet: {listen: \"127.0.0.1:0\"}\n")); err != nil || s.Balancer.ACME != nil {
		t.Fatalf("no acme: %v %+v", err, s)
	}
	if s, err := ParseServer(path, []byte("fleet: {listen: \"127.0.0.1:0\"}\nbalancer: {acme: {}}\n")); err != nil || !s.Balancer.ACME.FromRoutes() ||
		s.Balancer.ACME.Directory != DefaultACMEDirectory {
		t.Fatalf("acme without hosts: %v %+v", err, s)
	}
	if a.FromRoutes() {
		t.Error("listed hosts: FromRoutes")
	}
	for _, c := range []struct{ text, want string }{
		{"balancer: {tls_listen: ':443'}\n", "server.yaml:2:24: balancer.tls_listen: needs balancer.acme"},
		{"balancer: {tls_listen: 'x', acme: {hosts: [a.example.com]}}\n", "balancer.tls_listen: invalid address"},
		{"balancer: {tls_listen: ':80', acme: {hosts: [a.example.com]}}\n", "balancer.tls_listen: balancer.listen listens on :80 already"},
		{"balancer: {acme: {hosts: ['*.example.com']}}\n", "balancer.acme.hosts[0]: \"*.example.com\" is a wildcard"},
		{"balancer: {acme: {hosts: [10.0.0.1]}}\n", "is an IP address"},
		{"balancer: {acme: {hosts: [localhost]}}\n", "not a fully qualified DNS name"},
		{"balancer: {acme: {hosts: [a_b.example.com]}}\n", "not a valid DNS name"},
		{"balancer: {acme: {hosts: [a.example.com, A.example.com]}}\n", "balancer.acme.hosts[1]: \"a.example.com\" is listed twice"},
		{"balancer: {acme: {hosts: [a.example.com], directory: 'http://ca/dir'}}\n", "balancer.acme.directory: must be an https URL"},
		{"balancer: {acme: {hosts: [a.example.com], email: 'nobody'}}\n", "balancer.acme.email: \"nobody\" is not an email address"},
		{"balancer: {acme: {hosts: [a.example.com], ca_root: missing.pem}}\n", "balancer.acme.ca_root: open " + filepath.Join(dir, "missing.pem")},
		{"balancer: {acme: {hosts: [a.example.com], ca_root: junk.pem}}\n", "holds no PEM certificate"},
		{"balancer: {acme: {hosts: [a.example.com], staging: true}}\n", "staging"},
	} {
		_, err := ParseServer(path, []byte("fleet: {listen: \"127.0.0.1:0\"}\n"+c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.text, err, c.want)
		}
	}
}

func TestLBListenerACME(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.yaml")
	f, err := ParseLB(path, []byte("listeners: [{name: https, listen: ':443', acme: true}]\nserver: {url: 'https://10.0.0.1:7443', name: lb-1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := f.Balancer.Listeners[0]; !l.Managed || len(l.TLS) != 0 {
		t.Fatalf("listener %+v, want Managed", l)
	}
	_, err = ParseLB(path, []byte("listeners: [{name: https, listen: ':443', acme: true}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n"))
	if err == nil || !strings.Contains(err.Error(), "lb.yaml:1:49: listeners[0].acme: needs a server section") {
		t.Fatalf("acme without a server: %v", err)
	}
}
