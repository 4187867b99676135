package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's test ACME server (Debian's pebble package)
// started for one test, with pebble-challtestsrv as its DNS server,
// which answers every A query with 127.0.0.1: pebble validates HTTP-01
// challenges at http://127.0.0.1:<HTTPPort>, the port the test gives.
// Validations are not delayed (PEBBLE_VA_NOSLEEP) and never faked (no
// PEBBLE_VA_ALWAYS_VALID): a challenge passes only when answered.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is the PEM file of the certificate pebble's listeners use
	// (self-signed for localhost): trust it to reach Directory.
	CAFile string
	// Roots holds CAFile's certificate.
	Roots *x509.CertPool
	// Management is pebble's management URL (roots, intermediates).
	Management string
}

// StartPebble starts pebble and its DNS server, validating HTTP-01 on
// httpPort of 127.0.0.1; both are killed when the test ends. It skips
// the test when pebble is not installed (apt-get install pebble).
func StartPebble(t testing.TB, httpPort int) *Pebble {
	t.Helper()
	for _, bin := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install pebble): %v", bin, err)
		}
	}
	dir := t.TempDir()
	certFile, keyFile, leaf := WriteSelfSigned(t, dir, "localhost")
	ports := freePorts(t, 4)
	dns := "127.0.0.1:" + strconv.Itoa(ports[0])
	StartCmd(t, exec.Command("pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", "",
		"-dns01", dns, "-management", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(ports[2]),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(ports[3]),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        freePorts(t, 1)[0],
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("pebble", "-config", cfgFile, "-dnsserver", dns)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	StartCmd(t, cmd)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	p := &Pebble{
		Directory:  fmt.Sprintf("https://localhost:%d/dir", ports[2]),
		CAFile:     certFile,
		Roots:      roots,
		Management: fmt.Sprintf("https://localhost:%d", ports[3]),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitFor(ctx, func() error { _, err := p.get(ctx, p.Directory); return err }); err != nil {
		t.Fatalf("pebble did not serve its directory: %v", err)
	}
	return p
}

// Root returns the PEM of pebble's current root (a new one each run).
func (p *Pebble) Root(ctx context.Context) ([]byte, error) {
	return p.get(ctx, p.Management+"/roots/0")
}

// Intermediate returns the PEM of pebble's current intermediate.
func (p *Pebble) Intermediate(ctx context.Context) ([]byte, error) {
	return p.get(ctx, p.Management+"/intermediates/0")
}

func (p *Pebble) get(ctx context.Context, url string) ([]byte, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

// FreeAddr is a 127.0.0.1 address whose port was free a moment ago, for a
// listener whose address must be known before it starts (a raft address
// that a restore or an added server records).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePorts(t, 1)[0]))
}

// freePorts returns n TCP ports of 127.0.0.1 free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
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
