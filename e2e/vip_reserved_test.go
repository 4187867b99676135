package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/hostpool"
	"github.com/shoal-dev/shoal/internal/hostpool/dotest"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// vipReservedIP is the fake provider's reserved IP of TestVIPReservedIP.
const vipReservedIP = "203.0.113.7"

// TestVIPReservedIP runs the two balancer nodes with vip.reserved_ip
// against the fake DigitalOcean API (in the lab, each node a droplet of
// it): the node keepalived makes MASTER points the reserved IP at its own
// droplet. The API then fails twice (500, then 429) and the holder's shoal
// lb is killed: the other node becomes MASTER, its calls are retried, each
// failure is logged with its reason, and the reserved IP ends on its
// droplet. The token never leaves the Authorization header and is never
// logged.
func TestVIPReservedIP(t *testing.T) {
	v := newVIPHosts(t)
	fake := dotest.New(dotest.Options{Token: doSecret})
	ln, err := v.lab.Listen("", testenv.LabIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	apiURL := fake.Serve(ln)
	t.Cleanup(fake.Close)
	// The nodes' droplets, made through the provider as a person would.
	tr := &http.Transport{DialContext: v.lab.Dialer("")}
	t.Cleanup(tr.CloseIdleConnections)
	do, err := hostpool.NewDigitalOcean(hostpool.DigitalOceanOptions{Token: doSecret, BaseURL: apiURL, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	droplet := map[string]int{}
	for _, h := range []string{"lb1", "lb2"} {
		m, err := do.Create(testenv.Context(t, 10*time.Second), hostpool.CreateSpec{Name: h, Region: "nyc1", Size: "s-1vcpu-1gb", Image: "ubuntu-24-04-x64"})
		if err != nil {
			t.Fatal(err)
		}
		droplet[h], _ = strconv.Atoi(m.ID)
	}
	tokenFile := filepath.Join(t.TempDir(), "do.token")
	if err := os.WriteFile(tokenFile, []byte(doSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.startNodes(func(node string) string {
		return fmt.Sprintf(`  reserved_ip:
    provider: digitalocean
    address: %s
    token_file: %s
    api_url: %s
    droplet_id: "%d"
`, vipReservedIP, tokenFile, apiURL, droplet[node])
	})

	active := v.single(20 * time.Second)
	assigned := func(want string, d time.Duration) {
		t.Helper()
		testenv.Eventually(t, d, func() error {
			if got := fake.Assigned(vipReservedIP); got != droplet[want] {
				return fmt.Errorf("reserved ip %s on droplet %d, want %d (%s)", vipReservedIP, got, droplet[want], want)
			}
			return nil
		})
	}
	assigned(active, 10*time.Second)
	t.Logf("reserved ip on %s's droplet %d", active, droplet[active])

	// The API fails the next two calls; the holder dies.
	fake.Fail(1, http.StatusInternalServerError)
	fake.Fail(1, http.StatusTooManyRequests)
	next := v.nodes[other(active)]
	mark := next.p.Mark()
	t0 := time.Now()
	if err := v.nodes[active].p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assigned(other(active), 20*time.Second)
	t.Logf("holder %s killed: the reserved ip was on %s's droplet after %v (two failed calls retried)",
		active, other(active), time.Since(t0).Round(time.Millisecond))
	var failures []string
	for _, l := range next.p.Lines()[mark:] {
		if strings.Contains(l.Text, "assigning the reserved ip failed") {
			failures = append(failures, l.Text)
		}
	}
	if len(failures) != 2 || !strings.Contains(failures[0], "500") || !strings.Contains(failures[1], "429") {
		t.Errorf("want two logged failures, a 500 then a 429, each with its reason; got %q", failures)
	}
	st := fake.Stats()
	if len(st.Leaks) > 0 || st.Unauthorized > 0 {
		t.Errorf("credential: leaks %v, unauthorized requests %d", st.Leaks, st.Unauthorized)
	}
	for _, n := range v.nodes {
		if strings.Contains(n.p.Output(), doSecret) {
			t.Errorf("shoal lb on %s logged the API token", n.host)
		}
	}
	if _, err := v.nodes[active].p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
