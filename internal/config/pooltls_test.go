package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestPoolTLS: lb.yaml's pools[].tls takes files relative to the file's
// directory and checks them at load; protocol h2 needs tls and h2c
// refuses it; every problem is reported at its place in the file.
// shoal.yaml refuses h2 (an app's instances are not reached over TLS).
func TestPoolTLS(t *testing.T) {
	dir := t.TempDir()
	ca, _, _ := testenv.WriteSelfSigned(t, dir, "target.test")
	ccert, ckey, _ := testenv.WriteSelfSigned(t, dir, "client.test")
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lb.yaml")
	load := func(pool string) (*LBFile, error) {
		src := "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools:\n  - name: p\n" + pool
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadLB(path)
	}
	f, err := load(fmt.Sprintf("    protocol: h2\n    tls:\n      ca_file: %s\n      server_name: target.test\n      cert_file: %s\n      key_file: %s\n",
		filepath.Base(ca), ccert, filepath.Base(ckey)))
	if err != nil {
		t.Fatal(err)
	}
	pc := f.Balancer.Pools[0]
	want := lb.TargetTLS{CAFile: ca, ServerName: "target.test", CertFile: ccert, KeyFile: ckey}
	if pc.Protocol != lb.ProtocolH2 || pc.TLS == nil || *pc.TLS != want {
		t.Fatalf("pool %v %+v, want h2 %+v", pc.Protocol, pc.TLS, want)
	}
	for _, tc := range []struct{ name, pool, want string }{
		{"missing CA", "    tls:\n      ca_file: nope.pem\n", `lb.yaml:6:16: pools[0].tls.ca_file: read CA file: open ` + filepath.Join(dir, "nope.pem")},
		{"damaged CA", "    tls:\n      ca_file: junk.pem\n", `lb.yaml:6:16: pools[0].tls.ca_file: ` + filepath.Join(dir, "junk.pem") + ` holds no PEM certificate`},
		{"cert without key", "    tls:\n      cert_file: " + ccert + "\n", `lb.yaml:6:18: pools[0].tls.cert_file: cert_file and key_file go together`},
		{"key not the cert's", "    tls:\n      cert_file: " + ccert + "\n      key_file: " + filepath.Join(dir, "target.test.key") + "\n", `lb.yaml:6:18: pools[0].tls.cert_file: client certificate`},
		{"h2 without tls", "    protocol: h2\n", `lb.yaml:5:15: pools[0].protocol: h2 is HTTP/2 over TLS and needs a tls section`},
		{"h2c with tls", "    protocol: h2c\n    tls: {insecure_skip_verify: true}\n", `lb.yaml:5:15: pools[0].protocol: h2c is HTTP/2 without TLS; with tls use h2`},
		{"skip verify with CA", "    tls: {insecure_skip_verify: true, ca_file: " + ca + "}\n", `pools[0].tls.ca_file: ca_file cannot be combined with insecure_skip_verify`},
	} {
		_, err := load(tc.pool)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	_, err = Parse("shoal.yaml", []byte("app: web\nrun: {command: x}\nbalancer: {protocol: h2}\n"), t.TempDir())
	if want := `shoal.yaml:3:22: balancer.protocol: h2 is HTTP/2 over TLS`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("shoal.yaml protocol h2: %v, want %q", err, want)
	}
}
