package lb

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/shoal-dev/shoal/internal/pool"
)

// writeWSFrame writes one final, masked WebSocket frame (a client's; RFC
// 6455 5.2) with a payload under 126 bytes.
func writeWSFrame(w io.Writer, opcode byte, payload []byte) error {
	key := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x80 | opcode, 0x80 | byte(len(payload))}, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i%4])
	}
	_, err := w.Write(f)
	return err
}

// readWSFrame reads one unmasked WebSocket frame (a server's) with a
// payload under 126 bytes.
func readWSFrame(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 || h[1]&0x7f > 125 {
		return 0, nil, errors.New("masked or long frame from the balancer")
	}
	p := make([]byte, h[1]&0x7f)
	_, err := io.ReadFull(r, p)
	return h[0] & 0x0f, p, err
}

// TestWebSocketOverHTTP2: a WebSocket opened with an extended CONNECT on
// an HTTP/2 stream (RFC 8441) reaches an HTTP/1.1 WebSocket target as an
// Upgrade: the stream is answered 200 with the request id and the sticky
// cookie, frames go both ways, it counts as an open WebSocket, and
// draining the target closes it with 1001 on both sides.
func TestWebSocketOverHTTP2(t *testing.T) {
	opened := make(chan struct{}, 1)
	ended := make(chan error, 1)
	be := wsEcho(t, opened, ended)
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	cfg.Pools[0].Sticky = pool.Sticky{Cookie: "srv", Secret: []byte("0123456789abcdef0123456789abcdef")}
	lb := start(t, cfg)

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodConnect, "https://"+lb.addr+"/ws", pr)
	req.Host = "a.test"
	req.Header.Set(":protocol", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	// x/net's client: net/http's refuses the :protocol field.
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.test"}}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("extended CONNECT: %d %s %q", resp.StatusCode, resp.Proto, b)
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Sec-Websocket-Accept") != "" {
		t.Errorf("200's header %v: want X-Request-Id, no Sec-WebSocket-Accept", resp.Header)
	}
	if len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "srv" {
		t.Errorf("sticky cookie: %v", resp.Cookies())
	}
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("target never accepted the WebSocket")
	}
	timer := time.AfterFunc(10*time.Second, func() { resp.Body.Close() }) // bounds the reads
	defer timer.Stop()
	for _, msg := range []string{"hello", "over h2"} {
		if err := writeWSFrame(pw, 0x1, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		op, got, err := readWSFrame(resp.Body)
		if err != nil || op != 0x1 || string(got) != msg {
			t.Fatalf("echo of %q: opcode %d %q %v", msg, op, got, err)
		}
	}
	if n := lb.Status().WebSockets; n != 1 {
		t.Errorf("open WebSockets %d, want 1", n)
	}
	idle, err := lb.DrainTarget("app", be.addr, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	op, got, err := readWSFrame(resp.Body)
	if err != nil || op != 0x8 || len(got) < 2 || binary.BigEndian.Uint16(got) != closeGoingAway {
		t.Fatalf("at drain: opcode %d %q %v, want close 1001", op, got, err)
	}
	if rest, err := io.ReadAll(resp.Body); len(rest) != 0 || err != nil && !bytes.Contains([]byte(err.Error()), []byte("stream error")) {
		t.Errorf("after the close frame: %q %v, want the stream's end", rest, err)
	}
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("target never idle")
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("target socket not closed")
	}
	waitFor(t, 10*time.Second, "no open WebSocket", func() bool { return lb.Status().WebSockets == 0 })
}

// openWSOverH2 opens a WebSocket through lb's TLS listener with an
// extended CONNECT and returns the client's write side and the response.
func openWSOverH2(t *testing.T, addr string, cert *x509.Certificate, path string) (*io.PipeWriter, *http.Response) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, _ := http.NewRequest(http.MethodConnect, "https://"+addr+path, pr)
	req.Host = "a.test"
	req.Header.Set(":protocol", "websocket")
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.test"}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("extended CONNECT: %d", resp.StatusCode)
	}
	return pw, resp
}

// TestWebSocketOverHTTP2Idle: limits.websocket_idle ends a WebSocket
// over HTTP/2 that carries nothing either way, as over HTTP/1.1, but not
// one whose target keeps talking while the client stays silent.
func TestWebSocketOverHTTP2Idle(t *testing.T) {
	talk := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if r.URL.Query().Get("talk") == "" {
			c.Read(r.Context()) // silent until the end
			return
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-talk:
				return
			case <-tick.C:
			}
			if c.Write(r.Context(), websocket.MessageText, []byte("tick")) != nil {
				return
			}
		}
	})
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	// Long enough that a loaded machine does not stall the target's ticks
	// past it (the ticks come every 20 ms).
	cfg.Limits.WebSocketIdle = time.Second
	lb := start(t, cfg)

	_, resp := openWSOverH2(t, lb.addr, cert, "/ws")
	timer := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer timer.Stop()
	start := time.Now()
	if rest, _ := io.ReadAll(resp.Body); len(rest) != 0 {
		t.Errorf("silent tunnel sent %q", rest)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("idle tunnel ended after %v, not by websocket_idle", d)
	}

	// A target that talks keeps the tunnel open past the idle limit.
	_, talking := openWSOverH2(t, lb.addr, cert, "/ws?talk=1")
	timer2 := time.AfterFunc(10*time.Second, func() { talking.Body.Close() })
	defer timer2.Stop()
	deadline := time.Now().Add(5 * cfg.Limits.WebSocketIdle / 2)
	for time.Now().Before(deadline) {
		if op, p, err := readWSFrame(talking.Body); err != nil || op != 0x1 || string(p) != "tick" {
			t.Fatalf("talking tunnel: opcode %d %q %v", op, p, err)
		}
	}
	close(talk)
}

// TestExtendedConnectOnlyOnBalancer: extended CONNECT is on in the
// balancer's HTTP/2 server (TestWebSocketOverHTTP2) and nowhere else:
// net/http's own HTTP/2 server in the same process does not offer it,
// and GODEBUG is as it was, for the processes shoal starts.
func TestExtendedConnectOnlyOnBalancer(t *testing.T) {
	if v := os.Getenv("GODEBUG"); strings.Contains(v, "http2xconnect") {
		t.Errorf("GODEBUG=%q after init", v)
	}
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	tr := &http2.Transport{TLSClientConfig: s.Client().Transport.(*http.Transport).TLSClientConfig}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodConnect, s.URL+"/ws", http.NoBody)
	req.Header.Set(":protocol", "websocket")
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("net/http's server took an extended CONNECT: %d", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "extended connect not supported") {
		t.Fatalf("error %v, want extended connect not supported", err)
	}
}
