package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseServerHostPools(t *testing.T) {
	dir := t.TempDir()
	s, err := ParseServer(filepath.Join(dir, "server.yaml"), []byte(`fleet: {url: "https://10.0.0.1:7443"}
host_pools:
  - name: web
    provider: digitalocean
    token_file: do.token
    regions: [nyc1, sfo3]
    size: s-2vcpu-4gb
    image: "123456"
    max_hosts: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.HostPools[0]
	if p.Name != "web" || p.TokenFile != filepath.Join(dir, "do.token") || !slices.Equal(p.Regions, []string{"nyc1", "sfo3"}) ||
		p.MinHosts != 0 || p.MaxHosts != 5 || p.EmptyAfter.D() != 10*time.Minute || p.JoinDeadline.D() != 10*time.Minute ||
		p.CheckEvery.D() != 5*time.Second || p.APIURL != "" {
		t.Errorf("pool %+v", p)
	}

	_, err = ParseServer(filepath.Join(dir, "server.yaml"), []byte(`fleet: {listen: "127.0.0.1:0"}
host_pools:
  - name: Web_1
    provider: aws
    api_url: ftp://x
    regions: [nyc1, nyc1, "NY C"]
    min_hosts: 3
    max_hosts: 2
    empty_after: 0s
  - name: b
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"host_pools: 2 pools: one pool is supported",
		"fleet.url: is required with host_pools",
		"server.yaml:3:11: host_pools[0].name: \"Web_1\"",
		"server.yaml:4:15: host_pools[0].provider: \"aws\": want digitalocean",
		"host_pools[0].api_url: \"ftp://x\"",
		"host_pools[0].regions[1]: \"nyc1\" given twice",
		"host_pools[0].regions[2]: \"NY C\" is not a region slug",
		"host_pools[0].size: is required",
		"host_pools[0].image: is required",
		"host_pools[0].max_hosts: must be at least 1 and min_hosts (3), got 2",
		"host_pools[0].empty_after: must be more than 0",
		"host_pools[1].regions: is required",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
