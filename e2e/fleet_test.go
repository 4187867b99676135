package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestFleet is issue 12's fleet end to end, with the real binary in a lab
// (testenv.Lab: a private network namespace with a bridge, and one
// namespace per host): `shoal server` on the bridge, agents on hosts h1
// and h2 (zone a) and h3 (zone b) joined with tokens from `shoal
// join-token`, and examples/goapp deployed with 6 instances by `shoal
// deploy`.
//
//  1. The instances spread by the placement rule: zones differ by at most
//     one instance, and so do the hosts of a zone.
//  2. Under constant GET load through the server's balancer, h1's link is
//     cut: no GET fails, h1 is declared unreachable, and 6 instances serve
//     again on h2 and h3.
//  3. The link comes back: h1's stale instances are stopped (their
//     processes end, the agent lists none of them) and h1 is ready.
//  4. The server is killed (SIGKILL) and started again: the same instances
//     (ids and pids) serve; none was restarted.
//  5. h2's agent is killed and started again under load: the same pids,
//     no GET failed.
//  6. A join with a used token or a wrong one is refused (exit 1, "join
//     refused"), and the fleet port refuses a client without a
//     certificate of the fleet's CA, while an agent's certificate is let
//     in.
func TestFleet(t *testing.T) {
	f := newFleetLab(t, "h1", "h2", "h3", "h4")
	zones := map[string]string{"h1": "a", "h2": "a", "h3": "b"}
	tokens := map[string]string{}
	for _, h := range []string{"h1", "h2", "h3"} {
		tokens[h] = f.joinToken()
		f.startAgent(f.writeAgent(h, zones[h], tokens[h]))
	}
	testenv.Eventually(t, time.Minute, func() error {
		hosts, err := f.hosts()
		if err != nil {
			return err
		}
		for h, zone := range zones {
			if hs := hosts[h]; hs.State != api.HostReady || hs.Zone != zone {
				return fmt.Errorf("host %s: %+v, want ready in zone %s", h, hs, zone)
			}
		}
		return nil
	})

	// 1. Deploy 6 instances; the spread follows the placement rule.
	app := goApp(t, 6)
	if code, out, errOut := f.shoal(app, "deploy"); code != 0 {
		t.Fatalf("shoal deploy: exit %d\n%s\n%s", code, out, errOut)
	}
	var before []placed
	testenv.Eventually(t, time.Minute, func() (err error) {
		before, err = f.serving(app, 6)
		return err
	})
	checkSpread(t, before, zones)
	for _, in := range before {
		if in.PID <= 0 || !alive(in.PID) {
			t.Fatalf("instance %+v: its process does not run", in)
		}
	}

	// 2. Cut h1 under load: nothing fails, capacity comes back elsewhere.
	ctx := testenv.Context(t, 5*time.Minute)
	load := labLoad(ctx, f.lab, f.server.LBURL+"/", 4)
	load.RequireFlowing(t, "load", 200, 30*time.Second)
	if err := f.lab.Cut(ctx, "h1"); err != nil {
		load.Stop()
		t.Fatal(err)
	}
	cut := time.Now()
	var afterCut []placed
	testenv.Eventually(t, 30*time.Second, func() (err error) {
		afterCut, err = f.servingAvoiding(app, 6, "h1")
		return err
	})
	t.Logf("6 in service on h2 and h3 %v after the cut", time.Since(cut).Round(time.Millisecond))
	// GETs that were in flight to h1 wait for the balancer's try timeout
	// (30s) and a retry: the loops may all be held that long.
	load.RequireFlowing(t, "load", 200, time.Minute)
	load.Stop()
	load.Check(t, "cut of h1")
	hosts, err := f.hosts()
	if err != nil {
		t.Fatal(err)
	}
	if hosts["h1"].State != api.HostUnreachable {
		t.Fatalf("h1 after its cut: %+v, want unreachable", hosts["h1"])
	}
	var stale []placed
	for _, in := range before {
		if in.Host == "h1" {
			stale = append(stale, in)
			if !alive(in.PID) {
				t.Fatalf("instance %s on the cut h1 ended; it should run until h1 answers again", in.ID)
			}
		}
	}

	// 3. Restore h1: its stale instances are stopped, then it is ready.
	if err := f.lab.Restore(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	h1 := f.agentClient("h1")
	testenv.Eventually(t, time.Minute, func() error {
		hosts, err := f.hosts()
		if err != nil {
			return err
		}
		if hs := hosts["h1"]; hs.State != api.HostReady || hs.Instances != 0 {
			return fmt.Errorf("h1: %+v, want ready with no instance", hs)
		}
		list, err := h1.List(ctx)
		if err != nil {
			return err
		}
		for _, in := range list.Instances {
			for _, s := range stale {
				if in.ID == s.ID {
					return fmt.Errorf("h1's agent still lists %s", in.ID)
				}
			}
		}
		for _, s := range stale {
			if alive(s.PID) {
				return fmt.Errorf("stale instance %s (pid %d) still runs", s.ID, s.PID)
			}
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		now, err := f.serving(app, 6)
		if err == nil && !reflect.DeepEqual(now, afterCut) {
			err = fmt.Errorf("after h1 came back: %+v, want %+v", now, afterCut)
		}
		return err
	})

	// 4. kill -9 the server and start it again: nothing restarts.
	if err := f.server.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := f.server.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	f.startServer()
	testenv.Eventually(t, time.Minute, func() error {
		now, err := f.serving(app, 6)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(now, afterCut) {
			return fmt.Errorf("after the server's restart: %+v, want %+v", now, afterCut)
		}
		return nil
	})
	for _, in := range afterCut {
		if !alive(in.PID) {
			t.Fatalf("instance %+v ended across the server's restart", in)
		}
	}

	// 5. kill -9 h2's agent under load and start it again: same pids.
	load = labLoad(ctx, f.lab, f.server.LBURL+"/", 4)
	load.RequireFlowing(t, "load", 200, 30*time.Second)
	a2 := f.agents["h2"]
	if err := a2.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := a2.p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	f.startAgent(a2)
	if _, err := a2.p.WaitForLine(ctx, adoptedRe); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		hosts, err := f.hosts()
		if err != nil {
			return err
		}
		if hs := hosts["h2"]; hs.State != api.HostReady {
			return fmt.Errorf("h2: %+v, want ready", hs)
		}
		now, err := f.serving(app, 6)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(now, afterCut) {
			return fmt.Errorf("after h2's agent restarted: %+v, want %+v", now, afterCut)
		}
		return nil
	})
	load.RequireFlowing(t, "load", 200, 30*time.Second)
	load.Stop()
	load.Check(t, "restart of h2's agent")
	for _, in := range afterCut {
		if !alive(in.PID) {
			t.Fatalf("instance %+v ended across h2's agent restart", in)
		}
	}

	// 6. Joins with a used or a wrong token are refused.
	parts := strings.Split(f.joinToken(), ".")
	if len(parts) != 4 {
		t.Fatalf("join token %q: want 4 fields", strings.Join(parts, "."))
	}
	parts[2] = strings.Repeat("A", len(parts[2]))
	for name, tok := range map[string]string{"used": tokens["h1"], "wrong": strings.Join(parts, ".")} {
		a := f.writeAgent("h4", "b", tok)
		cmd := f.lab.Command("h4", f.bin, "agent", "-c", filepath.Join(a.dir, "agent.yaml"))
		p := testenv.StartCmd(t, cmd)
		code, err := p.Wait(ctx)
		if err != nil || code != 1 {
			t.Fatalf("agent with a %s token: exit %d, %v; want 1", name, code, err)
		}
		if out := p.Output(); !strings.Contains(out, "join refused") {
			t.Fatalf("agent with a %s token: the output does not name the refusal:\n%s", name, out)
		}
		if _, err := os.Stat(filepath.Join(a.dir, "data", "pki", "node.crt")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("node.crt after a refused join: %v", err)
		}
	}
	if hosts, err := f.hosts(); err != nil || len(hosts) != 3 {
		t.Fatalf("hosts after refused joins: %v, %v; want h1, h2, h3", hosts, err)
	}

	// ...and the fleet port lets in only certificates of the fleet's CA.
	st, err := f.status(app)
	if err != nil {
		t.Fatal(err)
	}
	checkFleetPort(t, f, st.Digest)
}

// checkSpread fails t unless the instances follow the zone spread rule:
// the zones' counts differ by at most one, and within a zone so do its
// hosts' counts (every host of zones counted, so an empty one shows).
func checkSpread(t *testing.T, in []placed, zones map[string]string) {
	t.Helper()
	perHost := map[string]int{}
	for h := range zones {
		perHost[h] = 0
	}
	for _, i := range in {
		if _, ok := zones[i.Host]; !ok {
			t.Fatalf("instance %+v is on no host of the fleet", i)
		}
		perHost[i.Host]++
	}
	perZone := map[string]int{}
	byZone := map[string][]int{}
	for h, n := range perHost {
		perZone[zones[h]] += n
		byZone[zones[h]] = append(byZone[zones[h]], n)
	}
	spread := func(ns []int) int {
		lo, hi := ns[0], ns[0]
		for _, n := range ns {
			lo, hi = min(lo, n), max(hi, n)
		}
		return hi - lo
	}
	var zoneCounts []int
	for _, n := range perZone {
		zoneCounts = append(zoneCounts, n)
	}
	if spread(zoneCounts) > 1 {
		t.Fatalf("instances per zone %v, per host %v: the zones differ by more than one", perZone, perHost)
	}
	for z, ns := range byZone {
		if spread(ns) > 1 {
			t.Fatalf("instances per host %v: zone %s's hosts differ by more than one", perHost, z)
		}
	}
	t.Logf("spread: per zone %v, per host %v", perZone, perHost)
}

// checkFleetPort calls the fleet port's artifact endpoint from inside the
// lab: without a client certificate, and with one that another CA signed,
// the server refuses (at the handshake, or 401); with h1's agent
// certificate it answers 200, so the refusals are the certificate's.
func checkFleetPort(t *testing.T, f *fleetLab, digest string) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(f.serverDir, "data", "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	get := func(cfg *tls.Config) (int, error) {
		tr := f.lab.Transport("")
		tr.TLSClientConfig = cfg
		defer tr.CloseIdleConnections()
		ctx := testenv.Context(t, 20*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.server.FleetURL+"/v1/artifacts/"+digest, nil)
		if err != nil {
			return 0, err
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	refused := func(name string, cfg *tls.Config) {
		code, err := get(cfg)
		if err == nil && code != http.StatusUnauthorized {
			t.Fatalf("the fleet port with %s: status %d, want a refusal", name, code)
		}
		t.Logf("the fleet port with %s: %d, %v", name, code, err)
	}
	refused("no client certificate", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	refused("a certificate of another CA", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{selfSigned(t, "h1")}})

	node, err := pki.LoadNode(filepath.Join(f.agents["h1"].dir, "data", "pki"))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get(node.ClientTLSConfig()); err != nil || code != http.StatusOK {
		t.Fatalf("the fleet port with h1's agent certificate: %d, %v; want 200", code, err)
	}
}

// selfSigned is a client certificate for name that no fleet CA signed.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{string(api.RoleAgent)}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
