package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestLBPoolTLSReloadsCA runs `shoal lb` with a pool that reaches an
// HTTPS target (HTTP/2 over TLS, protocol h2) verified with a ca_file
// relative to lb.yaml: a CA that did not sign the target's certificate
// gets 502; the same file rewritten with the right CA applies on SIGHUP;
// a damaged file is refused on SIGHUP at its line, and the balancer
// keeps serving with the CA it had.
func TestLBPoolTLSReloadsCA(t *testing.T) {
	ctx := testenv.Context(t, 120*time.Second)
	dir := t.TempDir()
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls backend %s", r.Proto)
	}))
	be.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	be.EnableHTTP2 = true
	be.StartTLS()
	t.Cleanup(be.Close)
	other, _, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	writeFrom := func(src string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.pem"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFrom(other)
	src := lbConfig(dir, []string{strings.TrimPrefix(be.URL, "https://")},
		"    protocol: h2\n    retries: 0\n    tls:\n      ca_file: ca.pem\n      server_name: target.test\n")
	p := startLB(t, ctx, dir, src)
	if code, body, err := httpGet(ctx, p.web+"/"); err != nil || code != http.StatusBadGateway {
		t.Fatalf("with a CA that did not sign the target: %d %q %v, want 502", code, body, err)
	}

	reload := func(want *regexp.Regexp) []string {
		t.Helper()
		mark := p.Mark()
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		m, _, err := p.WaitForLineFrom(ctx, mark, want)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	writeFrom(cf)
	reload(regexp.MustCompile(`msg=reloaded`))
	if code, body, err := httpGet(ctx, p.web+"/"); err != nil || code != 200 || body != "tls backend HTTP/2.0" {
		t.Fatalf("after reload with the right CA: %d %q %v", code, body, err)
	}

	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := reload(regexp.MustCompile(`msg="reload rejected.*`))
	if !strings.Contains(m[0], "lb.yaml:14:16:") || !strings.Contains(m[0], "pools[0].tls.ca_file") || !strings.Contains(m[0], "holds no PEM certificate") {
		t.Errorf("rejection does not name the file's line and key: %s", m[0])
	}
	resp, err := http.Get(p.web + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "tls backend HTTP/2.0" {
		t.Fatalf("after a rejected reload: %d %q", resp.StatusCode, body)
	}
}
