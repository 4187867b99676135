package lb

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// certLogSink is a log sink safe for concurrent writers.
type certLogSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *certLogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *certLogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func servedLeaf(t *testing.T, w *certWatcher) *x509.Certificate {
	t.Helper()
	c, err := w.get(&tls.ClientHelloInfo{ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestCertWatcherKeepsOldUntilNewPairLoads: a half-written certificate,
// a certificate without its key, and missing files are each rejected with
// a log line (once) while the old pair is served; the new pair is served
// once both files are whole.
func TestCertWatcherKeepsOldUntilNewPairLoads(t *testing.T) {
	c1, cert1 := writeCert(t, t.TempDir(), "a.test")
	c2, cert2 := writeCert(t, t.TempDir(), "a.test")
	newCert, _ := os.ReadFile(c2.CertFile)
	newKey, _ := os.ReadFile(c2.KeyFile)
	var logs certLogSink
	w, err := newCertWatcher("web", []Certificate{c1}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	step := func(what string, want *x509.Certificate, wantLog string) {
		t.Helper()
		before := strings.Count(logs.String(), wantLog)
		w.check()
		if got := servedLeaf(t, w); !got.Equal(want) {
			t.Fatalf("%s: serving serial %v, want %v", what, got.SerialNumber, want.SerialNumber)
		}
		if wantLog != "" && strings.Count(logs.String(), wantLog) != before+1 {
			t.Fatalf("%s: want one more %q in the log:\n%s", what, wantLog, logs.String())
		}
	}
	step("unchanged", cert1, "")
	os.WriteFile(c1.CertFile, newCert[:len(newCert)/2], 0o600)
	step("half-written certificate", cert1, "certificate change rejected")
	os.WriteFile(c1.CertFile, newCert, 0o600)
	step("certificate without its key", cert1, "certificate change rejected")
	step("same files again (logged once)", cert1, "")
	if n := strings.Count(logs.String(), "certificate change rejected"); n != 2 {
		t.Fatalf("%d rejections logged, want 2", n)
	}
	os.WriteFile(c1.KeyFile, newKey, 0o600)
	step("new pair", cert2, "certificate reloaded")
	os.Remove(c1.KeyFile)
	step("key file gone", cert2, "certificate change rejected")
	step("key file still gone", cert2, "")
	if n := strings.Count(logs.String(), "certificate change rejected"); n != 3 {
		t.Fatalf("%d rejections logged, want 3", n)
	}
}

// TestCertificateReplacedOnDisk: certificate and key files replaced in
// place (one after the other, not atomically) under a client doing
// handshakes in a loop are picked up without a reload, and no handshake
// fails during the swap.
func TestCertificateReplacedOnDisk(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	c1, cert1 := writeCert(t, t.TempDir(), "a.test")
	c2, cert2 := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{c1}
	lb := start(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert1)
	roots.AddCert(cert2)
	handshake := func() (*x509.Certificate, error) {
		c, err := tls.Dial("tcp", lb.addr, &tls.Config{RootCAs: roots, ServerName: "a.test"})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0], nil
	}
	if got, err := handshake(); err != nil || !got.Equal(cert1) {
		t.Fatalf("first handshake: %v", err)
	}

	stop := make(chan struct{})
	var handshakes, failures atomic.Int64
	var lastErr atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20000 {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := handshake(); err != nil {
				failures.Add(1)
				lastErr.Store(err.Error())
			}
			handshakes.Add(1)
		}
	}()
	newCert, _ := os.ReadFile(c2.CertFile)
	newKey, _ := os.ReadFile(c2.KeyFile)
	if err := os.WriteFile(c1.CertFile, newCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c1.KeyFile, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the new certificate served", func() bool {
		got, err := handshake()
		return err == nil && got.Equal(cert2)
	})
	close(stop)
	<-done
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d handshakes failed during the swap; last: %v", n, handshakes.Load(), lastErr.Load())
	}
	if handshakes.Load() == 0 {
		t.Fatal("no handshake ran during the swap")
	}
}
