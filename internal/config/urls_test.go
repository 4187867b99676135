package config

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestServerURLList: agent.yaml's server and lb.yaml's server.url take
// one URL or a list; each must be https with a host and no path, none
// twice; a list of one is written back as a plain string.
func TestServerURLList(t *testing.T) {
	a, err := ParseAgent("agent.yaml", []byte("server: [https://10.0.0.1:7443/, 'https://10.0.0.2:7443', https://10.0.0.3:7443]\nname: h\nadvertise: 10.0.0.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://10.0.0.1:7443", "https://10.0.0.2:7443", "https://10.0.0.3:7443"}; !slices.Equal(a.Server, want) {
		t.Fatalf("server = %q, want %q", a.Server, want)
	}
	f, err := ParseLB("lb.yaml", []byte("listeners: [{name: http, listen: ':80'}]\nserver:\n  url:\n    - https://10.0.0.1:7443\n    - https://10.0.0.2:7443\n  name: lb-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://10.0.0.1:7443", "https://10.0.0.2:7443"}; !slices.Equal(f.Server.URLs, want) {
		t.Fatalf("server.url = %q, want %q", f.Server.URLs, want)
	}
	for _, tc := range []struct{ src, want string }{
		{"server: [https://a:1, http://b:1]\nname: h\nadvertise: 10.0.0.9\n", `agent.yaml:1:23: server[1]: must be an https URL`},
		{"server: [https://a:1, https://a:1/]\nname: h\nadvertise: 10.0.0.9\n", `agent.yaml:1:23: server[1]: https://a:1 is listed twice`},
		{"server: []\nname: h\nadvertise: 10.0.0.9\n", `agent.yaml:1:9: server: is required`},
		{"server: {url: https://a:1}\nname: h\nadvertise: 10.0.0.9\n", `agent.yaml:1:9: server: expected a list`},
		{"server: https://a:1/x\nname: h\nadvertise: 10.0.0.9\n", `agent.yaml:1:9: server: must be an https URL`},
	} {
		_, err := ParseAgent("agent.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
	for l, want := range map[string]string{"one": "https://a:1\n", "two": "- https://a:1\n- https://b:1\n"} {
		urls := URLList{"https://a:1"}
		if l == "two" {
			urls = append(urls, "https://b:1")
		}
		b, err := yaml.Marshal(urls)
		if err != nil || string(b) != want {
			t.Errorf("marshal %q = %q (%v), want %q", urls, b, err, want)
		}
	}
}

// TestClusterJoinConfig: cluster.join takes one admin URL or a list, with
// a token file (resolved against the file's folder); https needs the CA
// pin; plain http only on loopback; not with bootstrap.
func TestClusterJoinConfig(t *testing.T) {
	base := "data_dir: d\nadmin: {listen: '127.0.0.1:0'}\nfleet: {listen: '127.0.0.1:0'}\ncluster: {id: s2, listen: '127.0.0.1:7450', "
	s, err := ParseServer("/etc/shoal/server.yaml", []byte(base+"join: http://127.0.0.1:7440, join_token_file: token}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Cluster.Join, []string{"http://127.0.0.1:7440"}) || s.Cluster.JoinTokenFile != "/etc/shoal/token" {
		t.Fatalf("cluster = %+v", s.Cluster)
	}
	pin := "sha256:" + strings.Repeat("ab", 32)
	if _, err := ParseServer("server.yaml", []byte(base+"join: [https://10.0.0.1:7440, https://10.0.0.2:7440], join_token_file: t, join_ca_pin: "+pin+"}\n")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cl, want string }{
		{"join: https://10.0.0.1:7440, join_token_file: t}", "cluster.join_ca_pin: is required to join over https"},
		{"join: http://10.0.0.1:7440, join_token_file: t}", "is plain http on a network address"},
		{"join: http://127.0.0.1:7440}", "cluster.join_token_file: is required with cluster.join"},
		{"join: http://127.0.0.1:7440, join_token_file: t, bootstrap: true}", "cluster.bootstrap: must not be set with cluster.join"},
		{"join_token_file: t}", "cluster.join: is required with cluster.join_token_file"},
		{"join: https://10.0.0.1:7440, join_token_file: t, join_ca_pin: sha1:x}", "cluster.join_ca_pin: want sha256:"},
		{"join: 'https://10.0.0.1:7440/admin', join_token_file: t, join_ca_pin: " + pin + "}", "cluster.join[0]: must be a server's admin URL"},
	} {
		_, err := ParseServer("server.yaml", []byte(base+tc.cl+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.cl, err, tc.want)
		}
	}
}
