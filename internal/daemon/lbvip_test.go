package daemon

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
)

// TestKeepalivedConf checks the keepalived.conf written for a vip section
// and, where keepalived is installed, has keepalived itself check it.
func TestKeepalivedConf(t *testing.T) {
	dir := t.TempDir()
	// keepalived refuses a loopback interface: any other one will do.
	ifc := "eth0"
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 {
				ifc = i.Name
				break
			}
		}
	}
	cfg := config.LBVIP{Address: netip.MustParsePrefix("10.0.0.100/24"), Interface: ifc,
		Peers:  []netip.Addr{netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("10.0.0.13")},
		Source: netip.MustParseAddr("10.0.0.11"), Priority: 120, RouterID: 9, AdvertInterval: 250 * time.Millisecond}
	conf := keepalivedConf(cfg, vipPathsIn(dir))
	for _, want := range []string{"vrrp_version 3", "vrrp_notify_fifo " + dir + "/notify.fifo",
		"track_file shoal_lb_health {\n\tfile \"" + dir + "/health.track\"\n\tweight 0\n}",
		"state BACKUP\n\tnopreempt", "interface " + ifc, "virtual_router_id 9", "priority 120", "advert_int 0.25\n",
		"unicast_src_ip 10.0.0.11", "unicast_peer {\n\t\t10.0.0.12\n\t\t10.0.0.13\n\t}", "10.0.0.100/24 dev " + ifc, "track_file {\n\t\tshoal_lb_health\n\t}"} {
		if !strings.Contains(conf, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, conf)
		}
	}
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skipf("keepalived not installed: the file is not checked by it: %v", err)
	}
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// No script runs (the guard checks the balancer), so keepalived's
	// config test has nothing to say about this file.
	if out, err := exec.Command(bin, "--config-test", "-f", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("keepalived --config-test: %v\n%s\n%s", err, out, conf)
	}
}
