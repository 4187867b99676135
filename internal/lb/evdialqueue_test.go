package lb

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// heldTLSTarget is a TLS 1.3 target whose handshakes wait for the test:
// each accepted connection waits for release(n) (n counts connections
// from 1) before its handshake, then answers every request "ok", after
// answer is closed.
type heldTLSTarget struct {
	addr, caFile string
	accepted     atomic.Int64
	// held counts connections accepted whose handshake is not released;
	// maxHeld is its highest value.
	held, maxHeld atomic.Int64
	release       func(n int64) <-chan struct{}
	answer        chan struct{}
}

func newHeldTLSTarget(t *testing.T, release func(n int64) <-chan struct{}) *heldTLSTarget {
	t.Helper()
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ht := &heldTLSTarget{addr: ln.Addr().String(), caFile: cf, release: release, answer: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := ht.accepted.Add(1)
			h := ht.held.Add(1)
			for m := ht.maxHeld.Load(); h > m && !ht.maxHeld.CompareAndSwap(m, h); m = ht.maxHeld.Load() {
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(120 * time.Second))
				select {
				case <-ht.release(n):
				case <-stop:
					return
				}
				ht.held.Add(-1)
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})
				br := bufio.NewReader(tc)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, r.Body)
					select {
					case <-ht.answer:
					case <-stop:
						return
					}
					io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
		}
	})
	return ht
}

// dialQueued reports the requests of the balancer's only loop that wait
// for a connection to a TLS target, and the handshakes in flight; -1 and
// -1 before the loop runs.
func dialQueued(t *testing.T, lb *running) (waiting, inFlight int) {
	t.Helper()
	f := lb.listeners["web"].fast
	f.mu.Lock()
	loops := f.loops
	f.mu.Unlock()
	if len(loops) == 0 {
		return -1, -1
	}
	if len(loops) != 1 {
		t.Fatalf("%d loops, want 1", len(loops))
	}
	l := loops[0]
	got := make(chan [2]int, 1)
	if !l.post(func() {
		var n [2]int
		for _, q := range l.dialing {
			n[0] += len(q.ups)
			n[1] += q.inFlight
		}
		got <- n
	}) {
		t.Fatal("loop ended")
	}
	n := <-got
	return n[0], n[1]
}

// getStatus sends GET path through lb with client c and returns the
// answer's status and body, or the error.
func getStatus(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// startHeld starts a balancer with one loop in front of ht, with the
// pool's connect and try timeouts.
func startHeld(t *testing.T, ht *heldTLSTarget, connect, try time.Duration) *running {
	cfg := baseConfig(ht.addr)
	tlsPool(&cfg, ht.caFile, ProtocolHTTP1)
	cfg.Limits.Loops = 1
	cfg.Pools[0].ConnectTimeout = connect
	cfg.Pools[0].TryTimeout = try
	return start(t, cfg)
}

// getMany sends n GETs through lb at once, each on its own connection
// (the answers wait for the test), and returns their outcomes: nil for
// a 200 "ok".
func getMany(t *testing.T, lb *running, n int) <-chan error {
	tr := &http.Transport{MaxIdleConnsPerHost: 128}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			st, body, err := getStatus(c, fmt.Sprintf("%s/r%d", lb.url, i))
			if err == nil && (st != 200 || body != "ok") {
				err = fmt.Errorf("request %d: %d %q", i, st, body)
			}
			errs <- err
		}()
	}
	return errs
}

// answered waits for n outcomes of getMany and reports the failures.
func answered(t *testing.T, errs <-chan error, n int) {
	t.Helper()
	ctx := testenv.Context(t, 90*time.Second)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-ctx.Done():
			t.Fatal("requests not answered")
		}
	}
}

// TestLoopTLSTargetHandshakeCap: 48 requests at once to a TLS target
// whose handshakes are held start maxHandshakes handshakes, no more; the
// others wait in the loop's dialQueue; once the handshakes are released
// every request is answered.
func TestLoopTLSTargetHandshakeCap(t *testing.T) {
	const n = 48
	released := make(chan struct{})
	ht := newHeldTLSTarget(t, func(int64) <-chan struct{} { return released })
	close(ht.answer)
	lb := startHeld(t, ht, 60*time.Second, 60*time.Second)
	errs := getMany(t, lb, n)
	waitFor(t, 60*time.Second, "all requests queued", func() bool {
		w, _ := dialQueued(t, lb)
		return w == n
	})
	if _, f := dialQueued(t, lb); f != maxHandshakes {
		t.Errorf("%d handshakes in flight, want %d", f, maxHandshakes)
	}
	// Every request waits in the queue, so the handshakes the loop
	// started have all reached the target.
	waitFor(t, 60*time.Second, "held handshakes accepted", func() bool { return ht.accepted.Load() >= maxHandshakes })
	if a := ht.accepted.Load(); a != maxHandshakes {
		t.Errorf("the target accepted %d connections with %d requests waiting, want %d", a, n, maxHandshakes)
	}
	close(released)
	answered(t, errs, n)
	if m := ht.maxHeld.Load(); m > maxHandshakes {
		t.Errorf("%d handshakes held at once, over %d", m, maxHandshakes)
	}
}

// TestLoopTLSTargetQueueTimeout: a request that waits in the dialQueue
// (maxHandshakes handshakes held) is answered 503 at its try timeout, as
// HAProxy's queue answers at `timeout queue`, without a handshake of its
// own; the held requests are answered once released.
func TestLoopTLSTargetQueueTimeout(t *testing.T) {
	released := make(chan struct{})
	ht := newHeldTLSTarget(t, func(int64) <-chan struct{} { return released })
	close(ht.answer)
	lb := startHeld(t, ht, 60*time.Second, 3*time.Second)
	errs := getMany(t, lb, maxHandshakes)
	waitFor(t, 60*time.Second, "held handshakes accepted", func() bool { return ht.accepted.Load() == maxHandshakes })
	st, body, err := getStatus(&http.Client{Timeout: 60 * time.Second}, lb.url+"/late")
	if err != nil || st != http.StatusServiceUnavailable {
		t.Errorf("queued request: %d %q %v, want 503", st, body, err)
	}
	if a := ht.accepted.Load(); a != maxHandshakes {
		t.Errorf("the target accepted %d connections, want %d", a, maxHandshakes)
	}
	close(released)
	answered(t, errs, maxHandshakes)
}

// TestLoopTLSTargetQueuePastConnectTimeout: requests that wait in the
// dialQueue longer than the connect timeout (handshakes released one at
// a time, each well within the timeout, while 80 requests wait for
// connections of their own: the answers are held) never start
// handshakes beyond maxHandshakes: at most that many are held at the
// target at once, and every request is answered once all connected.
func TestLoopTLSTargetQueuePastConnectTimeout(t *testing.T) {
	const n = 80
	const connect = 4 * time.Second
	gates := make([]chan struct{}, n+1)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	never := make(chan struct{})
	ht := newHeldTLSTarget(t, func(k int64) <-chan struct{} {
		if k > n {
			return never // a connection beyond one per request
		}
		return gates[k]
	})
	lb := startHeld(t, ht, connect, 90*time.Second)
	errs := getMany(t, lb, n)
	waitFor(t, 60*time.Second, "all requests queued", func() bool {
		w, _ := dialQueued(t, lb)
		return w == n
	})
	// The pace of the releases, not a synchronisation: one handshake
	// every connect/40, so that each is held about 16 of those (well
	// within the connect timeout) and the last requests wait 64 of them,
	// past it.
	tick := time.NewTicker(connect / 40)
	defer tick.Stop()
	ctx := testenv.Context(t, 90*time.Second)
	for k := 1; k <= n; k++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("releases not done")
		}
		close(gates[k])
	}
	waitFor(t, 60*time.Second, "every request connected", func() bool { return ht.accepted.Load() >= n })
	close(ht.answer)
	answered(t, errs, n)
	if m := ht.maxHeld.Load(); m > maxHandshakes {
		t.Errorf("%d handshakes held at the target at once, over %d", m, maxHandshakes)
	}
	if a := ht.accepted.Load(); a != n {
		t.Errorf("the target accepted %d connections for %d requests", a, n)
	}
}
