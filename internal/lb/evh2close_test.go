package lb

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// dialNotifyH2 opens an HTTP/2 connection whose TCP reads are watched
// (finConn), sends the preface and settings, and reads up to the server's
// SETTINGS.
func dialNotifyH2(t *testing.T, addr string, tc *tls.Config) (*h2Raw, *finConn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw := &finConn{Conn: nc}
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"}
	conn := tls.Client(raw, tc)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q", p)
	}
	return startRawH2(t, conn), raw
}

// wantGoAwayNotify reads frames until the connection ends, and fails
// unless a GOAWAY with code came, then a close_notify alert (tls.Conn
// reads io.EOF without having seen the FIN), then the FIN.
func wantGoAwayNotify(t *testing.T, c *h2Raw, raw *finConn, code http2.ErrCode, when string) {
	t.Helper()
	var goAway *http2.GoAwayFrame
	for range 1000 {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: read %v, want the connection ended with a close_notify (io.EOF)", when, err)
			}
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
		}
	}
	if goAway == nil || goAway.ErrCode != code {
		t.Fatalf("%s: GOAWAY %v before the end, want one with %v", when, goAway, code)
	}
	if raw.fin.Load() {
		t.Fatalf("%s: the balancer closed the HTTP/2 connection without a close_notify alert", when)
	}
	var b [1]byte
	if n, err := raw.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("%s: after the close_notify: read %d bytes, %v; want the FIN", when, n, err)
	}
}

// TestH2FastPathCloseNotify: every HTTP/2 connection the loops close
// ends with GOAWAY, then a close_notify alert, then the FIN, whether our
// record layer or crypto/tls serves it: after the idle timeout, a
// connection error, the client's GOAWAY, and at a drain.
func TestH2FastPathCloseNotify(t *testing.T) {
	for _, records := range []bool{true, false} {
		name := "records"
		if !records {
			name = "crypto-tls"
		}
		t.Run(name, func(t *testing.T) {
			be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			cfg := baseConfig(be.addr)
			cfg.Limits.DisableTLSRecords = !records
			cfg.Limits.ClientIdle = time.Second // the requests after each handshake come well before it
			lb, tc := tlsFastLB(t, cfg)
			fast := lb.listeners["web"].fast
			ask := func(c *h2Raw) {
				t.Helper()
				id := c.request("/", true)
				if st, body, code := c.answer(id); st != 200 || string(body) != "ok" || code != 0 {
					t.Fatalf("answer %d %q %v", st, body, code)
				}
			}

			c, raw := dialNotifyH2(t, lb.addr, tc)
			ask(c)
			wantGoAwayNotify(t, c, raw, http2.ErrCodeNo, "idle timeout")

			c, raw = dialNotifyH2(t, lb.addr, tc)
			ask(c)
			c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
			wantGoAwayNotify(t, c, raw, http2.ErrCodeProtocol, "connection error")

			c, raw = dialNotifyH2(t, lb.addr, tc)
			ask(c)
			c.fr.WriteGoAway(1, http2.ErrCodeNo, nil)
			// The client's GOAWAY closes the connection with no stream
			// left; the server's own GOAWAY need not come before.
			for range 1000 {
				if _, err := c.fr.ReadFrame(); err != nil {
					if !errors.Is(err, io.EOF) || raw.fin.Load() {
						t.Fatalf("the client's GOAWAY: read %v (FIN seen: %v), want a close_notify", err, raw.fin.Load())
					}
					break
				}
			}

			c, raw = dialNotifyH2(t, lb.addr, tc)
			ask(c)
			if n := fast.requests.Load(); n != 4 {
				t.Fatalf("fast path served %d of 4", n)
			}
			lb.cancel()
			wantGoAwayNotify(t, c, raw, http2.ErrCodeNo, "drain")
			lb.stop(t)
		})
	}
}
