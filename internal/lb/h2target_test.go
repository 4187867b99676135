package lb

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// grpcEcho is an h2c-only target shaped like a gRPC server: it refuses a
// call without "TE: trailers", echoes each length-prefixed message as it
// arrives (streaming both ways), and ends with grpc-status in trailers it
// did not announce, plus the request trailer it received.
func grpcEcho(t *testing.T) *backend {
	t.Helper()
	s := httptest.NewUnstartedServer(grpcEchoHandler)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	s.Config.Protocols = &protos
	s.Start()
	t.Cleanup(s.Close)
	return &backend{Server: s, addr: strings.TrimPrefix(s.URL, "http://")}
}

// grpcEchoHandler is grpcEcho's handler; /healthz answers "ok" and the
// protocol.
var grpcEchoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		io.WriteString(w, "ok "+r.Proto)
		return
	}
	if r.ProtoMajor != 2 || r.Header.Get("Te") != "trailers" {
		http.Error(w, "want HTTP/2 with TE: trailers, got "+r.Proto+" "+r.Header.Get("Te"), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/grpc")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r.Body, hdr[:]); err != nil {
			break
		}
		msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r.Body, msg); err != nil {
			break
		}
		w.Write(hdr[:])
		w.Write(bytes.ToUpper(msg))
		rc.Flush()
	}
	w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	w.Header().Set(http.TrailerPrefix+"Grpc-Message", "done")
	w.Header().Set(http.TrailerPrefix+"X-Got-Trailer", r.Trailer.Get("X-Req-Trailer"))
})

// grpcMsg is one length-prefixed gRPC message.
func grpcMsg(s string) []byte {
	b := make([]byte, 5, 5+len(s))
	binary.BigEndian.PutUint32(b[1:], uint32(len(s)))
	return append(b, s...)
}

// h2Client is an HTTP/2 client of a TLS listener serving "a.test" with
// cert.
func h2Client(t *testing.T, cert *x509.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.test"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestGRPCThroughH2CPool: a gRPC-shaped call over HTTP/2 through a TLS
// listener reaches an h2c pool with TE: trailers, streams both ways (each
// echo is read before the next message is sent), and the client gets the
// target's unannounced trailers (grpc-status) and the target the
// client's request trailer.
func TestGRPCThroughH2CPool(t *testing.T) {
	be := grpcEcho(t)
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	cfg.Pools[0].Protocol = ProtocolH2C
	lb := start(t, cfg)
	grpcChat(t, h2Client(t, cert), "https://"+lb.addr)
}

// grpcChat makes grpcEcho's streaming call with c at base (host a.test)
// and checks both ways: each echo is read before the next message is
// sent, the target's unannounced trailers reach the client, the
// client's request trailer the target.
func grpcChat(t *testing.T, c *http.Client, base string) {
	t.Helper()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/echo.Echo/Chat", pr)
	req.Host = "a.test"
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Proto, b)
	}
	for _, m := range []string{"one", "two", "three"} {
		if _, err := pw.Write(grpcMsg(m)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5+len(m))
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatalf("echo of %q: %v", m, err)
		}
		if want := grpcMsg(strings.ToUpper(m)); !bytes.Equal(got, want) {
			t.Fatalf("echo %q, want %q", got, want)
		}
	}
	req.Trailer.Set("X-Req-Trailer", "from-client")
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the last echo: %q %v", rest, err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("grpc-status trailer %q (trailers %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("Grpc-Message"); got != "done" {
		t.Errorf("grpc-message trailer %q", got)
	}
	if got := resp.Trailer.Get("X-Got-Trailer"); got != "from-client" {
		t.Errorf("target saw request trailer %q", got)
	}
}

// TestGRPCErrorsAsStatus: the balancer's own failures reach a gRPC client
// as a trailers-only answer with the gRPC code (UNAVAILABLE for no target
// and for a refused connection), not as an HTTP error page.
func TestGRPCErrorsAsStatus(t *testing.T) {
	dead := closedAddr(t)
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(dead)
	cfg.Listeners[0].TLS = []Certificate{ca}
	cfg.Pools[0].Protocol = ProtocolH2C
	cfg.Pools[0].Retries = -1
	lb := start(t, cfg)
	c := h2Client(t, cert)
	for _, tc := range []struct{ name, ct, wantStatus, wantCT string }{
		{"grpc", "application/grpc", "14", "application/grpc"},
		{"grpc+proto", "application/grpc+proto", "14", "application/grpc"},
		{"not grpc", "application/json", "", "text/plain; charset=utf-8"},
	} {
		req, _ := http.NewRequest("POST", "https://"+lb.addr+"/svc/M", strings.NewReader("x"))
		req.Host = "a.test"
		req.Header.Set("Content-Type", tc.ct)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status := resp.Header.Get("Grpc-Status")
		if tc.wantStatus != "" && (resp.StatusCode != 200 || status != tc.wantStatus || resp.Header.Get("Grpc-Message") == "") {
			t.Errorf("%s: HTTP %d grpc-status %q message %q", tc.name, resp.StatusCode, status, resp.Header.Get("Grpc-Message"))
		}
		if tc.wantStatus == "" && (resp.StatusCode != http.StatusBadGateway || status != "") {
			t.Errorf("%s: HTTP %d grpc-status %q, want 502 without", tc.name, resp.StatusCode, status)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.wantCT {
			t.Errorf("%s: content-type %q, want %q", tc.name, got, tc.wantCT)
		}
	}
}

// TestH2CPoolHealthAndPlainClients: the health checks of an h2c pool
// speak HTTP/2 (the target refuses HTTP/1.1), and an HTTP/1.1 client of a
// plain listener (the fast path hands it over) reaches the h2c target.
func TestH2CPoolHealthAndPlainClients(t *testing.T) {
	be := grpcEcho(t)
	cfg := baseConfig()
	cfg.Pools[0].Targets = []pool.TargetSpec{{Addr: be.addr, Unhealthy: true}}
	cfg.Pools[0].Protocol = ProtocolH2C
	cfg.Pools[0].Health = &health.Spec{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	lb := start(t, cfg)
	waitFor(t, 10*time.Second, "h2c target healthy", func() bool {
		return lb.Status().Pools[0].Targets[0].State == "healthy"
	})
	if resp, body := get(t, client(t), lb.url+"/healthz"); resp.StatusCode != 200 || body != "ok HTTP/2.0" {
		t.Fatalf("plain client: %d %q", resp.StatusCode, body)
	}
}
