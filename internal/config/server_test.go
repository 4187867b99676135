package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseServerDefaults(t *testing.T) {
	s, err := ParseServer("/etc/shoal/server.yaml", []byte("fleet:\n  url: https://10.0.0.1:7443/\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := ServerFile{DataDir: DefaultServerDataDir, Admin: ServerAdmin{Listen: DefaultServerAdminListen},
		Fleet: ServerFleet{Listen: DefaultServerFleetListen, URL: "https://10.0.0.1:7443",
			LostAfter: Duration(5 * time.Second), StartGrace: Duration(5 * time.Second), Heartbeat: Duration(time.Second)},
		Balancer: ServerBalancer{Listen: ":80", DrainTimeout: Duration(10 * time.Second)},
		File:     "/etc/shoal/server.yaml"}
	if s.DataDir != want.DataDir || s.Admin != want.Admin || s.Fleet != want.Fleet || s.Balancer.Listen != want.Balancer.Listen ||
		s.Balancer.DrainTimeout != want.Balancer.DrainTimeout || s.Balancer.Sticky.Secret() != nil || s.File != want.File {
		t.Fatalf("ParseServer =\n%+v\nwant\n%+v", *s, want)
	}
}

// TestParseServerLoopback: a loopback fleet listener needs no URL (the
// daemon uses the bound address); relative paths resolve against the
// file's folder; the sticky key is read.
func TestParseServerLoopback(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sticky.key"), []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ParseServer(filepath.Join(dir, "server.yaml"), []byte(`data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:0", lost_after: 2s, heartbeat: 100ms}
balancer:
  listen: "127.0.0.1:0"
  drain_timeout: 1s
  sticky: {secret_file: sticky.key}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.DataDir != filepath.Join(dir, "data") || s.Fleet.URL != "" || s.Fleet.LostAfter.D() != 2*time.Second ||
		s.Balancer.Sticky.SecretFile != filepath.Join(dir, "sticky.key") || string(s.Balancer.Sticky.Secret()) != "0123456789abcdef0123" {
		t.Fatalf("ParseServer = %+v", *s)
	}
	for addr, want := range map[string]string{"127.0.0.1:7443": "127.0.0.1:7443", "localhost:1": "127.0.0.1:1", "[::1]:2": "[::1]:2"} {
		if got, ok := LoopbackPort(addr); !ok || got != want {
			t.Errorf("LoopbackPort(%q) = %q, %v; want %q", addr, got, ok, want)
		}
	}
	for _, addr := range []string{":7443", "10.0.0.1:7443", "127.0.0.1"} {
		if _, ok := LoopbackPort(addr); ok {
			t.Errorf("LoopbackPort(%q) is loopback", addr)
		}
	}
}

// TestParseServerProblems: every problem at once, each at its place.
func TestParseServerProblems(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "fleet:\n  url: https://a:1\n  bogus: 1\n", []string{"server.yaml:3:3", "bogus"}},
		{"values", `data_dir: ""
admin:
  listen: nope
fleet:
  listen: ":7443"
  url: http://10.0.0.1:7443/x
  lost_after: 1s
  heartbeat: 2s
balancer:
  listen: ":7443"
  drain_timeout: 0s
  sticky: {secret_file: missing.key}
`, []string{
			"server.yaml:1:11: data_dir: must not be empty",
			"server.yaml:3:11: admin.listen: invalid address \"nope\"",
			"server.yaml:6:8: fleet.url: must be an https URL",
			"server.yaml:7:15: fleet.lost_after: must be more than fleet.heartbeat (2s), got 1s",
			"server.yaml:10:11: balancer.listen: fleet.listen listens on :7443 already",
			"server.yaml:11:18: balancer.drain_timeout: must be more than 0",
			"server.yaml:12:25: balancer.sticky.secret_file: read sticky secret",
		}},
		{"no url", "fleet: {listen: \"10.0.0.1:7443\"}\nbalancer: {listen: \"10.0.0.1:x\"}\n", []string{
			"server.yaml:1:8: fleet.url: is required",
			"server.yaml:2:20: balancer.listen: invalid port \"x\"",
		}},
		{"default listen needs url", "data_dir: /tmp/x\n", []string{"fleet.url: is required"}},
		{"bad heartbeat", "fleet: {url: \"https://h:1\", heartbeat: 0s}\n", []string{"server.yaml:1:40: fleet.heartbeat: must be more than 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseServer(filepath.Join(t.TempDir(), "server.yaml"), []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; got %+v", *s)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := LoadServer(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("LoadServer of a missing file: %v", err)
	}
}
