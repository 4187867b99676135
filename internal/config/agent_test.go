package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAgent(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	a, err := ParseAgent(file, []byte(`server: https://10.0.0.1:7440/
join_token_file: join-token
name: app-1
zone: z1
region: nyc1
advertise: 10.0.0.2
memory: 2GiB
cpu: 1.5
docker_host: unix:///run/docker.sock
`))
	if err != nil {
		t.Fatal(err)
	}
	want := AgentFile{Server: URLList{"https://10.0.0.1:7440"}, JoinTokenFile: filepath.Join(dir, "join-token"), Name: "app-1",
		Zone: "z1", Region: "nyc1", Listen: DefaultAgentListen, Advertise: "10.0.0.2", DataDir: DefaultAgentDataDir,
		CPU: 1.5, Memory: 2 << 30, DockerHost: "unix:///run/docker.sock", File: file}
	if !reflect.DeepEqual(*a, want) {
		t.Fatalf("ParseAgent =\n%+v\nwant\n%+v", *a, want)
	}
}

func TestParseAgentDefaultsName(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || !ValidNodeName(strings.ToLower(h)) {
		t.Skipf("host name %q cannot name a node", h)
	}
	a, err := ParseAgent("agent.yaml", []byte("server: https://s:7440\nadvertise: 127.0.0.1\ndata_dir: d\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != strings.ToLower(h) || !filepath.IsAbs(a.DataDir) {
		t.Fatalf("name %q, data_dir %q", a.Name, a.DataDir)
	}
}

func TestParseAgentProblems(t *testing.T) {
	_, err := ParseAgent("/etc/shoal/agent.yaml", []byte(`server: http://10.0.0.1:7440/x
name: App_1
zone: "Z 1"
listen: nope
advertise: 0.0.0.0
cpu: -1
bogus: 1
`))
	if err == nil {
		t.Fatal("no error")
	}
	// An unknown key is a structural problem, reported alone.
	if !strings.Contains(err.Error(), "/etc/shoal/agent.yaml:7:1") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("error %q", err)
	}
	_, err = ParseAgent("/etc/shoal/agent.yaml", []byte(`server: http://10.0.0.1:7440/x
name: App_1
zone: "Z 1"
listen: nope
advertise: 0.0.0.0
cpu: -1
region: NYC 1
docker_host: /var/run/docker.sock
`))
	for _, want := range []string{
		"agent.yaml:1:9: server: must be an https URL",
		"agent.yaml:2:7: name: \"App_1\" is not a valid name",
		"agent.yaml:3:7: zone:",
		"agent.yaml:4:9: listen: must be host:port",
		"agent.yaml:5:12: advertise: must be an address others can reach",
		"agent.yaml:6:6: cpu: must not be negative",
		"agent.yaml:7:9: region: \"NYC 1\" is not a valid region",
		"agent.yaml:8:14: docker_host: must be unix:///path/to/docker.sock, tcp://host:port or \"none\", got \"/var/run/docker.sock\"",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = ParseAgent("a.yaml", []byte("name: a\n"))
	for _, want := range []string{"server: is required", "advertise: is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
