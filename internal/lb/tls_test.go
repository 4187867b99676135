package lb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// writeCert writes a self-signed certificate for names and returns the
// Certificate config and the parsed certificate.
func writeCert(t *testing.T, dir string, names ...string) (Certificate, *x509.Certificate) {
	t.Helper()
	cf, kf, cert := testenv.WriteSelfSigned(t, dir, names...)
	return Certificate{CertFile: cf, KeyFile: kf}, cert
}

func TestHTTP2AndSNI(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Header.Get("X-Forwarded-Proto"))
	})
	dir := t.TempDir()
	ca, certA := writeCert(t, dir, "a.test")
	cb, certB := writeCert(t, dir, "b.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca, cb}
	lb := start(t, cfg)

	roots := x509.NewCertPool()
	roots.AddCert(certA)
	roots.AddCert(certB)
	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"a.test", true, 2}, {"b.test", true, 2}, {"a.test", false, 1}} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: tc.name},
			ForceAttemptHTTP2: tc.h2,
		}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "https://"+lb.addr+"/", nil)
		req.Host = tc.name
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.ProtoMajor != tc.proto {
			t.Errorf("%s: client protocol %s, want major %d", tc.name, resp.Proto, tc.proto)
		}
		if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != tc.name {
			t.Errorf("SNI %s got certificate %s", tc.name, got)
		}
		if string(body) != "HTTP/1.1 https" {
			t.Errorf("%s: target saw %q", tc.name, body)
		}
	}
}

// TestTLSSmuggling: HTTP/1.1 over TLS runs through the same guard.
func TestTLSSmuggling(t *testing.T) {
	rc := &recorder{}
	be := newBackend(t, rc.handler)
	dir := t.TempDir()
	ca, cert := writeCert(t, dir, "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	lb := start(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c, err := tls.Dial("tcp", lb.addr, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
	out, _ := io.ReadAll(c)
	resps := readResponses(t, string(out))
	if len(resps) != 1 || resps[0].StatusCode != 400 || len(rc.all()) != 0 {
		t.Fatalf("answer %q, target saw %d", out, len(rc.all()))
	}
}

// TestWebSocketOverTLS: wss:// through the guard-wrapped TLS connection.
func TestWebSocketOverTLS(t *testing.T) {
	be := wsEcho(t, nil, nil)
	dir := t.TempDir()
	ca, cert := writeCert(t, dir, "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	lb := start(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+lb.addr+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("secure")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "secure" {
		t.Fatalf("echo %q %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
}
