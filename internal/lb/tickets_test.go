package lb

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// fakeClock is a settable time source for ticketKeys.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func keptKeys(k *ticketKeys) []ticketKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ticketKey(nil), k.keys...)
}

// ticketServer serves TLS on 127.0.0.1 with cfg: each connection gets its handshake,
// one byte and a close. It returns the address; the server ends with the test.
func ticketServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					tc.Write([]byte{'x'})
					tc.CloseWrite()
					io.Copy(io.Discard, tc)
				}
			})
		}
	})
	return ln.Addr().String()
}

// dialResumed makes one TLS connection with the client config (whose session cache
// keeps the tickets) and reports whether it resumed a session.
func dialResumed(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Reading the byte also reads a TLS 1.3 ticket sent after the handshake.
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

func TestSessionTicketsRotateAndExpire(t *testing.T) {
	certFile, keyFile, leaf := testenv.WriteSelfSigned(t, t.TempDir(), "localhost")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			keys := newTicketKeys(clock.Now)
			srv := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
			keys.install(srv)
			addr := ticketServer(t, srv)
			client := func() *tls.Config {
				return &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: v,
					ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			}

			a := client()
			if dialResumed(t, addr, a) {
				t.Fatal("first connection resumed")
			}
			if !dialResumed(t, addr, a) {
				t.Fatal("second connection did not resume")
			}
			b := client() // its ticket, issued now, is left to age
			dialResumed(t, addr, b)

			// A rotation: a ticket of the previous key still resumes.
			clock.Advance(ticketRotation + time.Minute)
			first := keptKeys(keys)[0].key
			if !dialResumed(t, addr, a) {
				t.Fatal("no resumption across a key rotation")
			}
			if k := keptKeys(keys); k[0].key == first || len(k) != 2 {
				t.Fatalf("keys not rotated: %d keys", len(k))
			}

			// b's ticket is now older than the lifetime: a full handshake.
			clock.Advance(ticketLifetime - ticketRotation)
			if dialResumed(t, addr, b) {
				t.Fatalf("a ticket %v old resumed (lifetime %v)", ticketLifetime+time.Minute, ticketLifetime)
			}
			// The full handshake gave b a fresh ticket, which resumes.
			if !dialResumed(t, addr, b) {
				t.Fatal("the fresh ticket after an expired one did not resume")
			}

			// Keys are not kept past any ticket they could open.
			for range 10 {
				clock.Advance(ticketRotation)
				dialResumed(t, addr, client())
			}
			if max, n := int(ticketLifetime/ticketRotation)+2, len(keptKeys(keys)); n > max {
				t.Fatalf("%d keys kept, want at most %d", n, max)
			}
		})
	}
}

// TestSessionTicketsSharedByListeners: a ticket from one TLS listener of a balancer
// resumes on another (and on every event loop of each: they share the config).
func TestSessionTicketsSharedByListeners(t *testing.T) {
	certFile, keyFile, leaf := testenv.WriteSelfSigned(t, t.TempDir(), "localhost")
	b := &Balancer{tickets: newTicketKeys(nil), log: slog.New(slog.DiscardHandler)}
	var addrs []string
	for _, name := range []string{"one", "two"} {
		tc, _, err := b.listenerTLS(Listener{Name: name, TLS: []Certificate{{CertFile: certFile, KeyFile: keyFile}}})
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ticketServer(t, tc))
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	c := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if dialResumed(t, addrs[0], c) {
		t.Fatal("first connection resumed")
	}
	if !dialResumed(t, addrs[1], c) {
		t.Fatal("the other listener did not resume the first one's session")
	}
}
