package lb

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestChallengeAnswer: a pending HTTP-01 token is answered by the
// balancer itself on both paths, before routing and maintenance; other
// tokens and other methods reach the app.
func TestChallengeAnswer(t *testing.T) {
	for _, fast := range []bool{true, false} {
		name := "fast"
		if !fast {
			name = "net_http"
		}
		t.Run(name, func(t *testing.T) {
			be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "app "+r.Method+" "+r.URL.Path)
			})
			cfg := baseConfig(be.addr)
			cfg.Limits.DisableFastPath = !fast
			r := start(t, cfg)
			c := client(t)
			const path = "/.well-known/acme-challenge/tok1"
			if _, body := get(t, c, r.url+path); body != "app GET "+path {
				t.Fatalf("before SetChallenges: %q, want the app's answer", body)
			}
			ch := r.Changed()
			r.SetChallenges(map[string]string{"tok1": "tok1.thumb"})
			select {
			case <-ch:
			default:
				t.Error("SetChallenges did not notify Changed")
			}
			resp, body := get(t, c, r.url+path)
			if resp.StatusCode != 200 || body != "tok1.thumb" || resp.Header.Get("Content-Type") != "text/plain" {
				t.Fatalf("pending token: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if _, body := get(t, c, r.url+"/.well-known/acme-challenge/other"); body != "app GET /.well-known/acme-challenge/other" {
				t.Errorf("other token: %q, want the app's answer", body)
			}
			// Raw, on a fresh connection: the fast path's own parser.
			out := raw(t, r.addr, "GET "+path+" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "\r\n\r\ntok1.thumb") {
				t.Errorf("raw answer: %q", out)
			}
			req, _ := http.NewRequest("POST", r.url+path, strings.NewReader("x"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "app POST "+path {
				t.Errorf("POST: %q, want the app's answer", b)
			}
			r.SetMaintenance(&Maintenance{Page: "down"})
			if _, body := get(t, c, r.url+path); body != "tok1.thumb" {
				t.Errorf("in maintenance: %q", body)
			}
			r.SetMaintenance(nil)
			ch = r.Changed()
			r.SetChallenges(nil)
			select {
			case <-ch:
			default:
				t.Error("clearing the challenges did not notify Changed")
			}
			if _, body := get(t, c, r.url+path); body != "app GET "+path {
				t.Errorf("after the challenge: %q, want the app's answer", body)
			}
		})
	}
}

// TestManagedCertificates: a Managed listener serves the certificate set
// for the SNI name, swaps a new set in without a restart, refuses a name
// it has none for, and falls back to its files when it has them; a pair
// that does not load is refused and the served set kept.
func TestManagedCertificates(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	dir := t.TempDir()
	cfg := baseConfig(be.addr)
	cfg.Listeners = append(cfg.Listeners,
		Listener{Name: "acme", Addr: "127.0.0.1:0", Managed: true},
		Listener{Name: "both", Addr: "127.0.0.1:0", Managed: true})
	fileCert, fileLeaf := writeCert(t, dir, "file.test")
	cfg.Listeners[2].TLS = []Certificate{fileCert}
	r := start(t, cfg)
	acmeAddr := r.Addr("acme").String()
	bothAddr := r.Addr("both").String()

	pair := func(name string) (ManagedCert, *x509.Certificate) {
		sub := t.TempDir()
		c, leaf := writeCert(t, sub, name)
		cp, _ := os.ReadFile(c.CertFile)
		kp, _ := os.ReadFile(c.KeyFile)
		return ManagedCert{Names: []string{name}, CertPEM: cp, KeyPEM: kp}, leaf
	}
	served := func(addr, sni string) (*x509.Certificate, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	if _, err := served(acmeAddr, "a.test"); err == nil {
		t.Fatal("handshake without any certificate succeeded")
	}
	a1, leaf1 := pair("a.test")
	b1, leafB := pair("b.test")
	if err := r.SetCertificates([]ManagedCert{a1, b1}); err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]*x509.Certificate{"a.test": leaf1, "B.TEST": leafB} {
		got, err := served(acmeAddr, sni)
		if err != nil || !got.Equal(want) {
			t.Errorf("SNI %s: %v, certificate %v", sni, err, got != nil && got.Equal(want))
		}
	}
	if _, err := served(acmeAddr, "c.test"); err == nil {
		t.Error("SNI c.test: handshake succeeded with no certificate for it")
	}
	if got, err := served(bothAddr, "c.test"); err != nil || !got.Equal(fileLeaf) {
		t.Errorf("listener with files, SNI c.test: %v, want the file's certificate", err)
	}
	if got, err := served(bothAddr, "a.test"); err != nil || !got.Equal(leaf1) {
		t.Errorf("listener with files, SNI a.test: %v, want the managed certificate", err)
	}
	a2, leaf2 := pair("a.test")
	bad := a2
	bad.KeyPEM = b1.KeyPEM
	if err := r.SetCertificates([]ManagedCert{bad}); err == nil || !strings.Contains(err.Error(), "a.test") {
		t.Errorf("mismatched pair: %v, want an error naming a.test", err)
	}
	if got, _ := served(acmeAddr, "a.test"); got == nil || !got.Equal(leaf1) {
		t.Error("a refused set replaced the served one")
	}
	ch := r.Changed()
	if err := r.SetCertificates([]ManagedCert{a2}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Error("SetCertificates did not notify Changed")
	}
	if got, err := served(acmeAddr, "a.test"); err != nil || !got.Equal(leaf2) {
		t.Errorf("after the renewal: %v, want the new certificate", err)
	}
	if got := r.Certificates(); len(got) != 1 || string(got[0].CertPEM) != string(a2.CertPEM) {
		t.Errorf("Certificates() = %d, want the one set", len(got))
	}
	st := r.Status()
	for _, l := range st.Listeners {
		if l.Name == "acme" && !l.TLS {
			t.Error("status: managed listener not TLS")
		}
	}
}
