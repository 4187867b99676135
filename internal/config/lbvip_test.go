package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLBVIPSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	base := "listeners: [{name: http, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n"
	f, err := ParseLB(path, []byte(base+"vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  peers: [10.0.0.12, 10.0.0.13]\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := f.VIP
	want := LBVIP{Address: netip.MustParsePrefix("10.0.0.100/24"), Interface: "eth0",
		Peers:    []netip.Addr{netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("10.0.0.13")},
		Priority: 100, RouterID: 51, AdvertInterval: 250 * time.Millisecond, Keepalived: "keepalived",
		Dir: filepath.Join(dir, ".shoal", "keepalived")}
	if v == nil || v.Address != want.Address || v.Interface != want.Interface || len(v.Peers) != 2 || v.Peers[1] != want.Peers[1] ||
		v.Priority != want.Priority || v.RouterID != want.RouterID || v.AdvertInterval != want.AdvertInterval ||
		v.Keepalived != want.Keepalived || v.Dir != want.Dir || v.Source.IsValid() {
		t.Fatalf("vip: %+v, want %+v", v, want)
	}
	f, err = ParseLB(path, []byte("listeners: [{name: http, listen: ':80'}]\nserver: {url: 'https://x:1', name: n, data_dir: /var/lib/n}\n"+
		"vip: {address: 10.0.0.100, interface: eth0, peers: [10.0.0.12], source: 10.0.0.11, priority: 200, router_id: 7, advert_interval: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v := f.VIP; v.Address.Bits() != 32 || v.Dir != "/var/lib/n/keepalived" || v.Source != netip.MustParseAddr("10.0.0.11") ||
		v.Priority != 200 || v.RouterID != 7 || v.AdvertInterval != time.Second {
		t.Fatalf("vip of a node: %+v", v)
	}
	for _, c := range []struct{ text, want string }{
		{"vip: {interface: eth0, peers: [10.0.0.12]}\n", "vip.address: is required"},
		{"vip: {address: 10.0.0.0/33, interface: eth0, peers: [10.0.0.12]}\n", "vip.address: \"10.0.0.0/33\" is not an address"},
		{"vip: {address: 10.0.0.100/24, peers: [10.0.0.12]}\n", "vip.interface: is required"},
		{"vip: {address: 10.0.0.100/24, interface: 'eth 0', peers: [10.0.0.12]}\n", "vip.interface: \"eth 0\" is not an interface name"},
		{"vip: {address: 10.0.0.100/24, interface: eth0}\n", "vip.peers: at least one peer"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.100]}\n", "vip.peers[0]: 10.0.0.100 is the floating address"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12, 10.0.0.12]}\n", "vip.peers[1]: 10.0.0.12 is listed twice"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: ['fd00::1']}\n", "vip.peers[0]: fd00::1 is not of the floating address's family"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [x]}\n", "vip.peers[0]: \"x\" is not an IP address"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12], source: 10.0.0.12}\n", "vip.source: 10.0.0.12 is a peer's"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12], priority: 255}\n", "vip.priority: must be 1 to 254"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12], router_id: 0}\n", "vip.router_id: must be 1 to 255"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12], advert_interval: 15ms}\n", "vip.advert_interval: must be a multiple of 10ms"},
		{"vip: {address: 10.0.0.100/24, interface: eth0, peers: [10.0.0.12], keepalived: '/a b'}\n", "vip.keepalived: \"/a b\": a path without spaces"},
	} {
		_, err := ParseLB(path, []byte(base+c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.text, err, c.want)
		}
	}
}

// TestLBVIPReservedIP checks vip.reserved_ip: its values (the token file
// resolved against lb.yaml's directory) and each problem with its path.
func TestLBVIPReservedIP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	base := "listeners: [{name: http, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n" +
		"vip:\n  address: 10.0.0.100/24\n  interface: eth0\n  peers: [10.0.0.12]\n"
	f, err := ParseLB(path, []byte(base+"  reserved_ip: {provider: digitalocean, address: 203.0.113.7, token_file: do.token, api_url: 'http://127.0.0.1:9/', droplet_id: '42'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := LBReservedIP{Provider: "digitalocean", Address: netip.MustParseAddr("203.0.113.7"), TokenFile: filepath.Join(dir, "do.token"),
		APIURL: "http://127.0.0.1:9/", MachineID: "42"}
	if r := f.VIP.ReservedIP; r == nil || *r != want {
		t.Fatalf("reserved_ip: %+v, want %+v", r, want)
	}
	if f, err := ParseLB(path, []byte(base)); err != nil || f.VIP.ReservedIP != nil {
		t.Fatalf("no reserved_ip: %+v, %v", f.VIP.ReservedIP, err)
	}
	for _, c := range []struct{ text, want string }{
		{"  reserved_ip: {address: 203.0.113.7}\n", "vip.reserved_ip.provider: \"\": want digitalocean"},
		{"  reserved_ip: {provider: aws, address: 203.0.113.7}\n", "vip.reserved_ip.provider: \"aws\": want digitalocean"},
		{"  reserved_ip: {provider: digitalocean}\n", "vip.reserved_ip.address: is required"},
		{"  reserved_ip: {provider: digitalocean, address: 'fd00::7'}\n", "vip.reserved_ip.address: \"fd00::7\" is not an IPv4 address"},
		{"  reserved_ip: {provider: digitalocean, address: 203.0.113.7, api_url: 'ftp://x'}\n", "vip.reserved_ip.api_url: \"ftp://x\": want an http or https URL"},
		{"  reserved_ip: {provider: digitalocean, address: 203.0.113.7, droplet_id: web-1}\n", "vip.reserved_ip.droplet_id: \"web-1\" is not a droplet id"},
		{"  reserved_ip: {provider: digitalocean, address: 203.0.113.7, token: x}\n", "token"},
	} {
		_, err := ParseLB(path, []byte(base+c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.text, err, c.want)
		}
	}
}
