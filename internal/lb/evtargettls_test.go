package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// appUpstreams returns the fast path's upstreams of the pool "app".
func appUpstreams(b *Balancer) *upstreams {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pools["app"].up
}

// TestLoopTLSTarget: an HTTP/1.1 pool over TLS is served by the loops'
// own connections on our record layer: the target (its own CA; the
// client certificate: TestTLSPoolHTTP1) gets GETs, a POST with a body and
// a 1 MiB answer over one kept-alive connection, and when it closes the
// connection after an answer the next one resumes the TLS session: the
// ticket went from our record layer to the pool's session cache (no
// health check runs, so no other connection brought one).
func TestLoopTLSTarget(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	var mu sync.Mutex
	conns := map[string]bool{}
	resumed := 0
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		if r.TLS.DidResume {
			resumed++
		}
		mu.Unlock()
		switch r.URL.Path {
		case "/big":
			w.Write(big)
		case "/post":
			io.Copy(w, r.Body)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		default:
			io.WriteString(w, r.URL.Path)
		}
	}), []string{"http/1.1"}, false)
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	for i := range 5 {
		if resp, body := get(t, c, lb.url+"/x"); resp.StatusCode != 200 || body != "/x" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	resp, err := c.Post(lb.url+"/post", "text/plain", strings.NewReader("posted body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "posted body" {
		t.Fatalf("POST: %d %q", resp.StatusCode, b)
	}
	if resp, body := get(t, c, lb.url+"/big"); resp.StatusCode != 200 || body != string(big) {
		t.Fatalf("big answer: %d, %d bytes, want %d", resp.StatusCode, len(body), len(big))
	}
	mu.Lock()
	if len(conns) != 1 {
		t.Errorf("7 sequential requests used %d connections to the target, want 1", len(conns))
	}
	mu.Unlock()
	if resp, body := get(t, c, lb.url+"/close"); resp.StatusCode != 200 || body != "closing" {
		t.Fatalf("/close: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, c, lb.url+"/y"); resp.StatusCode != 200 || body != "/y" {
		t.Fatalf("after the target closed: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	if len(conns) != 2 || resumed != 1 {
		t.Errorf("%d connections to the target, %d requests on a resumed session; want 2 and 1", len(conns), resumed)
	}
	mu.Unlock()
	if n := appUpstreams(lb.Balancer).tlsServed.Load(); n != 2 {
		t.Errorf("our record layer served %d target connections, want 2", n)
	}
}

// TestLoopTLSTargetHealth: a TLS target that starts unhealthy becomes
// healthy by its health check (over the pool's transport, with the pool's
// TLS settings) and is then served by the loops.
func TestLoopTLSTargetHealth(t *testing.T) {
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "up "+r.URL.Path)
	}), []string{"http/1.1"}, false)
	cfg := baseConfig()
	cfg.Pools[0].Targets = []pool.TargetSpec{{Addr: tg.addr, Unhealthy: true}}
	cfg.Pools[0].Health = &health.Spec{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	waitFor(t, 20*time.Second, "TLS target healthy", func() bool {
		return lb.Status().Pools[0].Targets[0].State == "healthy"
	})
	if resp, body := get(t, c, lb.url+"/a"); resp.StatusCode != 200 || body != "up /a" {
		t.Fatalf("healthy target: %d %q", resp.StatusCode, body)
	}
	if n := appUpstreams(lb.Balancer).tlsServed.Load(); n != 1 {
		t.Errorf("our record layer served %d target connections, want 1", n)
	}
}

// rawTLSTarget is a TLS 1.3 target written by hand: for each connection
// it reads one request and lets serve answer on the tls.Conn; ended gets
// each connection's end as the target saw it (its read after serve).
type rawTLSTarget struct {
	addr, caFile string
	ended        chan error
}

func newRawTLSTarget(t *testing.T, maxVersion uint16, serve func(tc *tls.Conn, r *http.Request)) *rawTLSTarget {
	t.Helper()
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	rt := &rawTLSTarget{addr: ln.Addr().String(), caFile: cf, ended: make(chan error, 16)}
	serveRequests(t, ln, rt.ended, func(c net.Conn, r *http.Request) { serve(c.(*tls.Conn), r) })
	return rt
}

// TestLoopTLSTargetCloses: a target that ends a body by closing the
// connection, with a close_notify and without one (a FIN between
// records, which crypto/tls accepts too), gets its whole body to the
// client; an idle pooled connection whose target sends a close_notify is
// closed (the target reads the end) and the next request takes a new one.
func TestLoopTLSTargetCloses(t *testing.T) {
	tg := newRawTLSTarget(t, 0, func(tc *tls.Conn, r *http.Request) {
		switch r.URL.Path {
		case "/notify":
			io.WriteString(tc, "HTTP/1.1 200 OK\r\n\r\nuntil close_notify")
			tc.Close()
		case "/fin":
			io.WriteString(tc, "HTTP/1.1 200 OK\r\n\r\nuntil FIN")
			tc.NetConn().Close()
		case "/idle":
			io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nidle")
			tc.CloseWrite() // close_notify; the connection stays open
		default:
			io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	for _, want := range []struct{ path, body string }{{"/notify", "until close_notify"}, {"/fin", "until FIN"}} {
		if resp, body := get(t, c, lb.url+want.path); resp.StatusCode != 200 || body != want.body {
			t.Fatalf("%s: %d %q, want %q", want.path, resp.StatusCode, body, want.body)
		}
	}
	if resp, body := get(t, c, lb.url+"/idle"); resp.StatusCode != 200 || body != "idle" {
		t.Fatalf("/idle: %d %q", resp.StatusCode, body)
	}
	// The connection ends of /notify and /fin, then /idle's: the balancer
	// closed it after the target's close_notify (io.EOF once our own
	// close_notify came).
	deadline := time.After(20 * time.Second)
	eofs := 0
	for i := range 3 {
		select {
		case err := <-tg.ended:
			if errors.Is(err, io.EOF) {
				eofs++
			}
		case <-deadline:
			t.Fatalf("connection %d did not end", i)
		}
	}
	if eofs != 1 {
		t.Fatalf("%d connections ended with the balancer's close_notify, want 1 (the idle one)", eofs)
	}
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after the idle connection closed: %d %q", resp.StatusCode, body)
	}
	if n := appUpstreams(lb.Balancer).tlsServed.Load(); n != 4 {
		t.Errorf("our record layer served %d target connections, want 4", n)
	}
}

// TestLoopTLS12Target: a target that speaks TLS 1.2 at most answers the
// request that found it out (the loop drives crypto/tls's connection) and
// the pool's later requests go through net/http.
func TestLoopTLS12Target(t *testing.T) {
	var mu sync.Mutex
	versions := map[uint16]int{}
	tg := newRawTLSTarget(t, tls.VersionTLS12, func(tc *tls.Conn, r *http.Request) {
		mu.Lock()
		versions[tc.ConnectionState().Version]++
		mu.Unlock()
		io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nold")
	})
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	for i := range 3 {
		if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "old" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	up := appUpstreams(lb.Balancer)
	if !up.tlsLegacy.Load() || up.tlsServed.Load() != 0 {
		t.Errorf("legacy %v, record layer served %d; want true, 0", up.tlsLegacy.Load(), up.tlsServed.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if versions[tls.VersionTLS12] != 3 {
		t.Errorf("versions seen %v, want 3 requests over TLS 1.2", versions)
	}
}

// TestTargetRecordsFromServer: our record layer in the client's direction
// reads a server's records: NewSessionTicket messages (two in one record)
// go to the feed whole, a KeyUpdate that asks for ours is followed and
// reported, and data after it opens under the next key; a ticket split
// across records, and a ticket to a server (fromServer unset), end the
// connection with unexpected_message.
func TestTargetRecordsFromServer(t *testing.T) {
	const suite = tls.TLS_AES_128_GCM_SHA256
	secret := bytes.Repeat([]byte{7}, 32)
	ticket := []byte{hsTypeTicket, 0, 0, 3, 'a', 'b', 'c'}
	serverRecords := func(msgs ...[]byte) []byte {
		var d recDir
		if err := d.setSecret(suite, secret); err != nil {
			t.Fatal(err)
		}
		var out []byte
		for _, m := range msgs {
			typ := byte(recTypeHS)
			if m[0] == 'd' {
				typ = recTypeData
			}
			var err error
			if out, err = d.seal(out, typ, m); err != nil {
				t.Fatal(err)
			}
			if m[0] == hsTypeKeyUpd {
				if err := d.update(); err != nil {
					t.Fatal(err)
				}
			}
		}
		return out
	}
	// read opens and handles every record of recs; it returns the data,
	// whether ours was asked for, and the first error.
	read := func(r *tlsRec, recs []byte) (string, bool, error) {
		data, asked := "", false
		for len(recs) > 0 {
			n, err := recordLen(recs)
			if err != nil || n == 0 || n > len(recs) {
				t.Fatalf("records cut: %d of %d, %v", n, len(recs), err)
			}
			typ, p, err := r.in.open(recs[:n])
			if err != nil {
				return data, asked, err
			}
			p, answer, err := r.handle(typ, p)
			if err != nil {
				return data, asked, err
			}
			data += string(p)
			asked = asked || answer
			recs = recs[n:]
		}
		return data, asked, nil
	}
	newRec := func(fromServer bool, fed *[][]byte) *tlsRec {
		r := &tlsRec{fromServer: fromServer}
		if err := r.in.setSecret(suite, secret); err != nil {
			t.Fatal(err)
		}
		if fed != nil {
			r.ticket = func(m []byte) { *fed = append(*fed, append([]byte(nil), m...)) }
		}
		return r
	}

	var fed [][]byte
	two := append(append([]byte(nil), ticket...), ticket...)
	data, asked, err := read(newRec(true, &fed), serverRecords(two, []byte{hsTypeKeyUpd, 0, 0, 1, 1}, []byte("data after the update")))
	if err != nil || data != "data after the update" || !asked {
		t.Fatalf("server's records: %q, ours asked %v, %v", data, asked, err)
	}
	if len(fed) != 2 || !bytes.Equal(fed[0], ticket) || !bytes.Equal(fed[1], ticket) {
		t.Fatalf("tickets fed %q, want two %q", fed, ticket)
	}
	if _, _, err := read(newRec(true, nil), serverRecords(ticket[:5], []byte("dx"))); err != recAlert(alertUnexpected) {
		t.Errorf("ticket split across records: %v, want unexpected_message", err)
	}
	if _, _, err := read(newRec(false, nil), serverRecords(ticket)); err != recAlert(alertUnexpected) {
		t.Errorf("ticket to a server: %v, want unexpected_message", err)
	}
}

// TestLoopTLSTargetWaitersTakeFreedConnection: a request that waits for a
// new connection's handshake takes the first connection that frees up
// instead (as net/http's Transport does): the target's second handshake
// is held, the first connection's answer ends, and the waiting request
// is answered over the first connection; the held handshake, released,
// ends in the pool.
func TestLoopTLSTargetWaitersTakeFreedConnection(t *testing.T) {
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inA, answerA := make(chan struct{}), make(chan struct{})
	accepted2, release2 := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	defer close(release2) // before the cleanup waits for the connections
	wg.Go(func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				if n == 2 {
					close(accepted2)
					<-release2
				}
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pair}})
				br := bufio.NewReader(tc)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if r.URL.Path == "/a" {
						close(inA)
						<-answerA
					}
					fmt.Fprintf(tc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nconn%d", n)
				}
			})
		}
	})
	cfg := baseConfig(ln.Addr().String())
	tlsPool(&cfg, cf, ProtocolHTTP1)
	cfg.Limits.Loops = 1 // each loop has its own connections
	cfg.Pools[0].ConnectTimeout = 30 * time.Second
	lb := start(t, cfg)
	c := client(t)
	bodyA, bodyB := make(chan string, 1), make(chan string, 1)
	go func() {
		_, body := get(t, c, lb.url+"/a")
		bodyA <- body
	}()
	ctx := testenv.Context(t, 60*time.Second)
	select {
	case <-inA:
	case <-ctx.Done():
		t.Fatal("request A did not reach the target")
	}
	go func() {
		_, body := get(t, c, lb.url+"/b")
		bodyB <- body
	}()
	select {
	case <-accepted2:
	case <-ctx.Done():
		t.Fatal("request B started no second connection")
	}
	close(answerA)
	for _, want := range []struct {
		ch   chan string
		name string
	}{{bodyA, "A"}, {bodyB, "B"}} {
		select {
		case body := <-want.ch:
			if body != "conn1" {
				t.Errorf("request %s answered %q, want conn1", want.name, body)
			}
		case <-ctx.Done():
			t.Fatalf("request %s not answered", want.name)
		}
	}
}
