package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

var lbHTTPSRe = regexp.MustCompile(`msg=listening listener=https addr=(\S+)`)

// acmeHost is the name the certificate is obtained for;
// pebble-challtestsrv resolves every name to 127.0.0.1.
const acmeHost = "app.shoal.test"

// TestACMECertificateSharedByNodes runs the real binary with Debian's
// pebble as the ACME CA: `shoal server` with balancer.acme (no hosts
// listed: the deployed app's balancer.hosts) is the one ACME client; two
// balancer nodes follow it. pebble validates HTTP-01 on the port of node
// 2 only, so the certificate is issued only if the node that did not ask
// answers the server's challenge. The certificate, chained to pebble's
// root through its intermediate, is then served by both nodes and by the
// server's own TLS listener, in front of the app; a node restarted while
// the server is down serves it again from its saved configuration.
func TestACMECertificateSharedByNodes(t *testing.T) {
	bin := testenv.BuildShoal(t)
	ctx := testenv.Context(t, 4*time.Minute)
	ports := freeLoopbackPorts(t, 2)
	fleetPort, node2HTTP := ports[0], ports[1]
	peb := testenv.StartPebble(t, node2HTTP)

	// The server, first without ACME: the nodes join and follow it.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.yaml")
	base := fmt.Sprintf(`data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:%d"}
`, fleetPort)
	writeFile(t, cfg, base+"balancer: {listen: \"127.0.0.1:0\"}\n")
	srv := startServerAt(t, ctx, bin, cfg, dir)
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+srv.AdminURL, "SHOAL_TOKEN="+srv.Token)
	code, out := runShoalEnv(t, bin, t.TempDir(), env, "join-token", "--ttl", "10m", "--role", "agent")
	if code != 0 {
		t.Fatalf("shoal join-token: exit %d\n%s", code, out)
	}
	newServerAgent(t, srv.FleetURL, "host-a", strings.TrimSpace(out)).start(t, bin)
	app := exampleApp(t, "goapp", 1, 2)
	shoalYAML := filepath.Join(app, "shoal.yaml")
	b, err := os.ReadFile(shoalYAML)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["balancer"].(map[string]any)["hosts"] = []string{acmeHost}
	if b, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	writeFile(t, shoalYAML, string(b))
	if code, out := runShoalEnv(t, bin, app, env, "deploy"); code != 0 || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: exit %d\n%s", code, out)
	}
	type node struct {
		name, cfg, https string
		p                *testenv.Process
	}
	nodes := []*node{{name: "lb-1"}, {name: "lb-2"}}
	start := func(n *node) {
		n.p = testenv.Start(t, bin, "lb", "-c", n.cfg)
		m, err := n.p.WaitForLine(ctx, lbHTTPSRe)
		if err != nil {
			t.Fatalf("%s: %v\n%s", n.name, err, n.p.Output())
		}
		n.https = m[1]
	}
	for i, n := range nodes {
		ndir := t.TempDir()
		n.cfg = filepath.Join(ndir, "lb.yaml")
		httpListen := "127.0.0.1:0"
		if i == 1 {
			httpListen = "127.0.0.1:" + strconv.Itoa(node2HTTP)
		}
		writeFile(t, n.cfg, fmt.Sprintf(`listeners:
  - {name: http, listen: %q}
  - {name: https, listen: "127.0.0.1:0", acme: true}
server: {url: %q, join_token_file: token, name: %s, data_dir: data}
`, httpListen, srv.FleetURL, n.name))
		code, out := runShoalEnv(t, bin, ndir, env, "join-token", "--ttl", "10m", "--role", "lb")
		if code != 0 {
			t.Fatalf("shoal join-token: exit %d\n%s", code, out)
		}
		writeFile(t, filepath.Join(ndir, "token"), out)
		start(n)
	}
	for _, n := range nodes {
		if _, err := n.p.WaitForLine(ctx, regexp.MustCompile(`balancer configuration applied`)); err != nil {
			t.Fatalf("%s does not follow the server: %v\n%s", n.name, err, n.p.Output())
		}
	}

	// The server again, now with ACME against pebble.
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal server after SIGTERM: exit %d, %v", code, err)
	}
	writeFile(t, cfg, base+fmt.Sprintf(`balancer:
  listen: "127.0.0.1:0"
  tls_listen: "127.0.0.1:0"
  acme:
    directory: %s
    ca_root: %s
    email: ops@shoal.test
`, peb.Directory, peb.CAFile))
	began := time.Now()
	srv = startServerAt(t, ctx, bin, cfg, dir)
	if srv.TLSURL == "" {
		t.Fatal("the ready line names no TLS listener")
	}

	rootPEM, err := peb.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	interPEM, err := peb.Intermediate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("pebble's root does not parse")
	}
	inter := mustParsePEM(t, interPEM)
	// served checks the certificate addr presents for acmeHost: issued by
	// pebble's intermediate, verified up to its root.
	// served checks the certificate addr presents for acmeHost: issued by
	// pebble's intermediate, verified up to its root; and that the app
	// answers through it.
	served := func(addr string) error {
		var chain []*x509.Certificate
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: acmeHost, RootCAs: roots,
			VerifyConnection: func(cs tls.ConnectionState) error {
				chain = cs.VerifiedChains[0]
				return nil
			}}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
		if err != nil {
			return err
		}
		req.Host = acmeHost
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(chain) != 3 || !chain[1].Equal(inter) || !slices.Contains(chain[0].DNSNames, acmeHost) {
			return fmt.Errorf("chain %v, want leaf for %s, pebble's intermediate, root", subjects(chain), acmeHost)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "goapp") {
			return fmt.Errorf("https://%s/ (Host %s): %d %q", addr, acmeHost, resp.StatusCode, page)
		}
		return nil
	}
	testenv.Eventually(t, 60*time.Second, func() error { return served(strings.TrimPrefix(srv.TLSURL, "https://")) })
	t.Logf("certificate obtained from pebble and served by the server %s after its start", time.Since(began).Round(time.Millisecond))
	for _, n := range nodes {
		testenv.Eventually(t, 30*time.Second, func() error { return served(n.https) })
	}
	t.Logf("served by both nodes %s after the server's start", time.Since(began).Round(time.Millisecond))
	if !strings.Contains(srv.Output(), "certificate obtained") {
		t.Errorf("the server did not log the certificate:\n%s", srv.Output())
	}

	// The server stops; node 1 restarts and serves the certificate from
	// its saved configuration (0600: it holds the key).
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal server after SIGTERM: exit %d, %v", code, err)
	}
	n := nodes[0]
	if err := n.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := n.p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal lb after SIGTERM: exit %d, %v\n%s", code, err, n.p.Output())
	}
	state := filepath.Join(filepath.Dir(n.cfg), "data", "lb-config.json")
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, want mode 0600", state, err)
	}
	start(n)
	if err := served(n.https); err != nil {
		t.Fatalf("node restarted with the server down: %v\n%s", err, n.p.Output())
	}
	for _, n := range nodes {
		if err := n.p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := n.p.Wait(ctx); err != nil || code != 0 {
			t.Fatalf("%s after SIGTERM: exit %d, %v\n%s", n.name, code, err, n.p.Output())
		}
	}
}

// startServerAt starts `shoal server -c cfg` whose data directory is
// dir/data, and kills it when the test ends.
func startServerAt(t *testing.T, ctx context.Context, bin, cfg, dir string) *testenv.Server {
	t.Helper()
	srv, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", cfg), filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("output of shoal server:\n%s", srv.Output())
		}
	})
	return srv
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPorts returns n ports of 127.0.0.1 that were free a moment
// ago, for listeners whose port must be known before they start (pebble
// validates on a port fixed in its configuration).
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func mustParsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func subjects(chain []*x509.Certificate) []string {
	var out []string
	for _, c := range chain {
		out = append(out, c.Subject.CommonName)
	}
	return out
}
