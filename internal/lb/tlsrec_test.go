package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// tlsRecordsTest is the name of the test that re-runs the TLS listeners'
// tests checking that their TLS 1.3 connections reached our record layer
// (tlsrec.go; start reads it from the test's name).
const tlsRecordsTest = "TestTLSRecords"

// TestTLSRecords runs the tests of what TLS listeners do on the loops
// (HTTP/1.1 and HTTP/2, hand-over to net/http with Request.TLS, WebSockets
// over TLS and over HTTP/2, HTTP/2 fallback streams, close_notify, limits,
// timeouts, drain, reload, certificate rotation, session tickets) again,
// checking that our record layer served their records.
func TestTLSRecords(t *testing.T) {
	tests := append(tlsListenerTests, []struct {
		name string
		test func(*testing.T)
	}{
		{"TLSFastPathServes", TestTLSFastPathServes},
		{"TLSFastPathPipelined", TestTLSFastPathPipelined},
		{"TLSFastPathHandsOver", TestTLSFastPathHandsOver},
		{"TLSFastPathClientCloses", TestTLSFastPathClientCloses},
		{"TLSFastPathSticky", TestTLSFastPathSticky},
		{"TLSFastPathTimeouts", TestTLSFastPathTimeouts},
		{"TLSFastPathConnectionLimit", TestTLSFastPathConnectionLimit},
		{"TLSFastPathShutdown", TestTLSFastPathShutdown},
		{"TLSFastPathReload", TestTLSFastPathReload},
		{"TLSFastPathAdoptedWhileDraining", TestTLSFastPathAdoptedWhileDraining},
		{"TLSFastPathCloseNotify", TestTLSFastPathCloseNotify},
		{"TLSFastPathCloseNotifyDrain", TestTLSFastPathCloseNotifyDrain},
		{"H2FastPathServes", TestH2FastPathServes},
		{"H2FastPathSmuggling", TestH2FastPathSmuggling},
		{"H2FastPathFlowControl", TestH2FastPathFlowControl},
		{"H2FastPathTargetDies", TestH2FastPathTargetDies},
		{"H2FastPathDrain", TestH2FastPathDrain},
		{"WebSocketOverHTTP2", TestWebSocketOverHTTP2},
		{"WebSocketOverHTTP2Idle", TestWebSocketOverHTTP2Idle},
		{"SessionTicketsRotateAndExpire", TestSessionTicketsRotateAndExpire},
		{"SessionTicketsSharedByListeners", TestSessionTicketsSharedByListeners},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, tc.test)
	}
}

// recServed is how many connections of lb's listener "web" our record
// layer took over.
func recServed(t *testing.T, lb *running) int64 {
	t.Helper()
	s := lb.listeners["web"].tlsL.secrets
	if s == nil {
		t.Fatal("TLS listener without our record layer")
	}
	return s.served.Load()
}

// recLB runs a balancer with one TLS listener for a.test whose records
// our layer serves; it returns it, the certificate's file and a client
// configuration that trusts it and offers http/1.1.
func recLB(t *testing.T, h http.HandlerFunc) (*running, string, *tls.Config) {
	t.Helper()
	be := newBackend(t, h)
	cfg := baseConfig(be.addr)
	crt, cert := writeCert(t, t.TempDir(), "a.test")
	cfg.Listeners[0].TLS = []Certificate{crt}
	lb := start(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return lb, crt.CertFile, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}}
}

// recClient is a client whose records after a crypto/tls handshake the
// test writes and reads itself, with the keys crypto/tls logged: the
// tests can send what no TLS library would.
type recClient struct {
	raw     net.Conn
	in, out recDir
	buf     []byte
}

func dialRec(t *testing.T, addr string, cfg *tls.Config) *recClient {
	t.Helper()
	var kl bytes.Buffer
	cfg = cfg.Clone()
	cfg.KeyLogWriter = &kl
	cfg.MinVersion = tls.VersionTLS13 // no session cache: no tickets
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &recClient{raw: raw}
	suite := tc.ConnectionState().CipherSuite
	for _, line := range strings.Split(kl.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		secret, _ := hex.DecodeString(f[2])
		switch f[0] {
		case "CLIENT_TRAFFIC_SECRET_0":
			err = c.out.setSecret(suite, secret)
		case "SERVER_TRAFFIC_SECRET_0":
			err = c.in.setSecret(suite, secret)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// send seals p as one record of type typ, passes it through edit and
// writes it.
func (c *recClient) send(t *testing.T, typ byte, p []byte, edit func([]byte)) {
	t.Helper()
	rec, err := c.out.seal(nil, typ, p)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(rec)
	}
	if _, err := c.raw.Write(rec); err != nil {
		t.Fatal(err)
	}
}

// next reads and opens the server's next record; io.EOF when the
// connection ended.
func (c *recClient) next(t *testing.T) (byte, []byte, error) {
	t.Helper()
	for {
		if n, err := recordLen(c.buf); err != nil {
			t.Fatal(err)
		} else if n > 0 && n <= len(c.buf) {
			rec := c.buf[:n]
			c.buf = c.buf[n:]
			typ, data, err := c.in.open(rec)
			if err != nil {
				t.Fatalf("server record: %v", err)
			}
			return typ, data, nil
		}
		b := make([]byte, 32<<10)
		k, err := c.raw.Read(b)
		c.buf = append(c.buf, b[:k]...)
		if k == 0 && err != nil {
			return 0, nil, err
		}
	}
}

// answer reads application data up to a whole answer with body want.
func (c *recClient) answer(t *testing.T, want string) {
	t.Helper()
	var got []byte
	for !bytes.Contains(got, []byte(want)) {
		typ, data, err := c.next(t)
		if err != nil {
			t.Fatalf("reading the answer: %v after %q", err, got)
		}
		if typ != recTypeData {
			t.Fatalf("record of type %d (%x) before the answer", typ, data)
		}
		got = append(got, data...)
	}
}

// wantAlert reads until the end of the connection, which must come
// after the fatal alert code.
func (c *recClient) wantAlert(t *testing.T, code uint8) {
	t.Helper()
	var last []byte
	for {
		typ, data, err := c.next(t)
		if err != nil {
			if !bytes.Equal(last, []byte{2, code}) {
				t.Fatalf("connection ended (%v) after %x, want alert %d", err, last, code)
			}
			return
		}
		if typ == recTypeAlert {
			last = data
		}
	}
}

const recReq = "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"

// TestTLSRecordsRefuse: whatever breaks RFC 8446's record rules ends the
// connection with the alert the RFC names (a tampered record or one out
// of sequence: bad_record_mac; too long: record_overflow; a
// change_cipher_spec, a NewSessionTicket from a client, a record with no
// content type: unexpected_message), and a KeyUpdate asked of us is
// answered before our next data, under the old key, then we use the new
// one. A KeyUpdate split across records is taken; one with another
// record between its parts, or not ending its record, is
// unexpected_message.
func TestTLSRecordsRefuse(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-rec") })
	req := []byte(recReq)
	t.Run("valid", func(t *testing.T) {
		c := dialRec(t, lb.addr, cc)
		c.send(t, recTypeData, req, nil)
		c.answer(t, "hello-rec")
		c.send(t, recTypeData, req, nil)
		c.answer(t, "hello-rec")
	})
	t.Run("keyupdate", func(t *testing.T) {
		c := dialRec(t, lb.addr, cc)
		c.send(t, recTypeData, req, nil)
		c.answer(t, "hello-rec")
		c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1, 1}, nil)
		if err := c.out.update(); err != nil {
			t.Fatal(err)
		}
		c.send(t, recTypeData, req, nil)
		typ, data, err := c.next(t)
		if err != nil || typ != recTypeHS || !bytes.Equal(data, []byte{hsTypeKeyUpd, 0, 0, 1, 0}) {
			t.Fatalf("after our KeyUpdate: type %d %x %v, want the server's KeyUpdate", typ, data, err)
		}
		if err := c.in.update(); err != nil {
			t.Fatal(err)
		}
		c.answer(t, "hello-rec")
		// update_not_requested: no answer, the next data under our new key.
		c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1, 0}, nil)
		c.out.update()
		c.send(t, recTypeData, req, nil)
		c.answer(t, "hello-rec")
	})
	// A KeyUpdate may span records (RFC 8446 5.1): in two, then one byte
	// a record.
	t.Run("keyupdate-split", func(t *testing.T) {
		c := dialRec(t, lb.addr, cc)
		for _, parts := range [][][]byte{
			{{hsTypeKeyUpd, 0}, {0, 1, 1}},
			{{hsTypeKeyUpd}, {0}, {0}, {1}, {1}},
		} {
			for _, p := range parts {
				c.send(t, recTypeHS, p, nil)
			}
			if err := c.out.update(); err != nil {
				t.Fatal(err)
			}
			c.send(t, recTypeData, req, nil)
			typ, data, err := c.next(t)
			if err != nil || typ != recTypeHS || !bytes.Equal(data, []byte{hsTypeKeyUpd, 0, 0, 1, 0}) {
				t.Fatalf("after our split KeyUpdate %x: type %d %x %v, want the server's KeyUpdate", parts, typ, data, err)
			}
			if err := c.in.update(); err != nil {
				t.Fatal(err)
			}
			c.answer(t, "hello-rec")
		}
	})
	for _, tc := range []struct {
		name  string
		alert uint8
		send  func(t *testing.T, c *recClient)
	}{
		{"tampered", alertBadRecordMAC, func(t *testing.T, c *recClient) {
			c.send(t, recTypeData, req, func(r []byte) { r[len(r)-1] ^= 1 })
		}},
		{"header-tampered", alertBadRecordMAC, func(t *testing.T, c *recClient) {
			c.send(t, recTypeData, req, func(r []byte) { r[2] = 1 })
		}},
		{"sequence-skipped", alertBadRecordMAC, func(t *testing.T, c *recClient) {
			c.out.seq++
			c.send(t, recTypeData, req, nil)
		}},
		{"sequence-replayed", alertBadRecordMAC, func(t *testing.T, c *recClient) {
			c.send(t, recTypeData, req, nil)
			c.answer(t, "hello-rec")
			c.out.seq--
			c.send(t, recTypeData, req, nil)
		}},
		{"oversize-record", alertOverflow, func(t *testing.T, c *recClient) {
			n := recMaxCipher + 1
			c.raw.Write([]byte{recTypeData, 3, 3, byte(n >> 8), byte(n)})
		}},
		{"oversize-plaintext", alertOverflow, func(t *testing.T, c *recClient) {
			c.send(t, recTypeData, make([]byte, recMaxPlain+1), nil)
		}},
		{"change-cipher-spec", alertUnexpected, func(t *testing.T, c *recClient) {
			c.raw.Write([]byte{recTypeCCS, 3, 3, 0, 1, 1})
		}},
		{"session-ticket-from-client", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{4, 0, 0, 1, 0}, nil)
		}},
		{"no-content-type", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, 0, []byte{0, 0, 0}, nil)
		}},
		{"empty-records", alertUnexpected, func(t *testing.T, c *recClient) {
			for range maxUselessRecords + 1 {
				c.send(t, recTypeData, nil, nil)
			}
		}},
		{"bad-keyupdate", alertIllegalParam, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1, 2}, nil)
		}},
		{"bad-keyupdate-split", alertIllegalParam, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0}, nil)
			c.send(t, recTypeHS, []byte{1, 2}, nil)
		}},
		{"keyupdate-length-split", alertDecodeError, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0}, nil)
			c.send(t, recTypeHS, []byte{0, 2, 0, 0}, nil)
		}},
		{"keyupdate-split-data-between", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0}, nil)
			c.send(t, recTypeData, req, nil)
		}},
		{"keyupdate-split-alert-between", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1}, nil)
			c.send(t, recTypeAlert, []byte{1, alertUserCanceled}, nil)
		}},
		{"keyupdate-split-not-ending-record", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd, 0}, nil)
			c.send(t, recTypeHS, []byte{0, 1, 0, hsTypeKeyUpd}, nil)
		}},
		{"ticket-split", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{4}, nil)
		}},
		{"keyupdate-split-empty-fragment", alertUnexpected, func(t *testing.T, c *recClient) {
			c.send(t, recTypeHS, []byte{hsTypeKeyUpd}, nil)
			c.send(t, recTypeHS, nil, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRec(t, lb.addr, cc)
			tc.send(t, c)
			c.wantAlert(t, tc.alert)
		})
	}
	if recServed(t, lb) == 0 {
		t.Fatal("no connection on the record layer")
	}
}

// TestTLSRecordsFallback: TLS 1.2 stays on crypto/tls; TLS 1.3 with
// session tickets (sent under the application key before our layer takes
// over, so its first sequence number is theirs) and resumption goes to
// our layer.
func TestTLSRecordsFallback(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello-rec "+r.Header.Get("X-Forwarded-Proto"))
	})
	get := func(cfg *tls.Config) {
		t.Helper()
		for range 3 {
			c := dialTLS(t, lb.addr, cfg)
			if got := c.ask(t, recReq); got != "hello-rec https" {
				t.Fatalf("got %q", got)
			}
			if got := c.ask(t, recReq); got != "hello-rec https" {
				t.Fatalf("got %q", got)
			}
			c.Close()
		}
	}
	old := cc.Clone()
	old.MaxVersion = tls.VersionTLS12
	get(old)
	if n := recServed(t, lb); n != 0 {
		t.Fatalf("%d TLS 1.2 connections on our record layer", n)
	}
	resumed := cc.Clone()
	resumed.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	get(resumed)
	if n := recServed(t, lb); n != 3 {
		t.Fatalf("%d TLS 1.3 connections of 3 on our record layer", n)
	}
	c := dialTLS(t, lb.addr, resumed)
	if !c.ConnectionState().DidResume {
		t.Fatal("no resumption")
	}
}

// TestTLSRecordsOpenSSL: OpenSSL's client, with each TLS 1.3 cipher suite,
// keeps talking across KeyUpdates it sends (k: update_not_requested; K:
// update_requested, which we answer), and curl over HTTP/1.1 and HTTP/2.
func TestTLSRecordsOpenSSL(t *testing.T) {
	for _, bin := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	lb, caFile, _ := recLB(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello-rec "+r.Proto+"\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", lb.addr, "-servername", "a.test",
				"-CAfile", caFile, "-verify_return_error", "-tls1_3", "-ciphersuites", suite, "-alpn", "http/1.1", "-crlf")
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			// s_client reports KEYUPDATE on stderr, answers on stdout.
			out, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = w, w
			err = cmd.Start()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			defer func() {
				in.Close()
				cmd.Process.Kill()
				cmd.Wait()
			}()
			lines := bufio.NewScanner(out)
			wait := func(what string) {
				t.Helper()
				for lines.Scan() {
					if strings.Contains(lines.Text(), what) {
						return
					}
				}
				t.Fatalf("openssl s_client: no %q in its output (%v)", what, lines.Err())
			}
			wait("Cipher is " + suite)
			for _, cmdLine := range []string{"", "k\n", "K\n", "K\n", "k\n"} {
				if cmdLine != "" {
					// One read of s_client's takes a command line alone.
					io.WriteString(in, cmdLine)
					wait("KEYUPDATE")
				}
				io.WriteString(in, "GET / HTTP/1.1\nHost: a.test\n\n")
				wait("hello-rec HTTP/1.1")
			}
		})
	}
	port := lb.addr[strings.LastIndex(lb.addr, ":")+1:]
	for _, proto := range []string{"1.1", "2"} {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--http"+proto, "--cacert", caFile, "-w", "%{http_version}\n",
			"--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/", "https://a.test:"+port+"/again").CombinedOutput()
		want := "hello-rec HTTP/1.1\n" + proto + "\nhello-rec HTTP/1.1\n" + proto + "\n"
		if err != nil || string(out) != want {
			t.Fatalf("curl --http%s: %q %v, want %q", proto, out, err, want)
		}
	}
	if n := recServed(t, lb); n < 5 {
		t.Fatalf("%d connections of 5 on our record layer", n)
	}
}

// BenchmarkTLSRecordRebuild is what a connection pays for holding no AEAD
// state while idle: the state built again for its next record.
func BenchmarkTLSRecordRebuild(b *testing.B) {
	var d recDir
	if err := d.setSecret(tls.TLS_AES_128_GCM_SHA256, make([]byte, 32)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		d.aead = nil
		if _, err := d.cipher(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTLSRecordsIdleHoldsKeys: an idle connection on our record layer,
// HTTP/1.1 or HTTP/2, holds its keys and no AEAD state nor buffer once
// the loop's sweep saw it idle; it goes on serving after.
func TestTLSRecordsIdleHoldsKeys(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-rec") })
	c1 := dialTLS(t, lb.addr, cc)
	if got := c1.ask(t, recReq); got != "hello-rec" {
		t.Fatalf("got %q", got)
	}
	h2 := cc.Clone()
	h2.NextProtos = []string{"h2"}
	tr := &http2.Transport{TLSClientConfig: h2}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() {
		t.Helper()
		resp, err := hc.Get("https://" + lb.addr + "/h2")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(b) != "hello-rec" {
			t.Fatalf("HTTP/2 answer %s %q", resp.Proto, b)
		}
	}
	get()
	// idle reports, from the loops, how many record-layer connections
	// they hold and how many of them still hold AEAD states or buffers.
	idle := func() (conns, busy int) {
		for _, l := range lb.listeners["web"].fast.loops {
			done := make(chan struct{})
			if !l.post(func() {
				defer close(done)
				var ts []*evTLS
				for c := range l.clients {
					ts = append(ts, c.tls)
				}
				for c := range l.h2s {
					ts = append(ts, c.tls)
				}
				for _, x := range ts {
					if x == nil || x.rec == nil {
						continue
					}
					conns++
					if x.rec.in.aead != nil || x.rec.out.aead != nil || x.in != nil || x.pipe.out != nil {
						busy++
					}
				}
			}) {
				t.Fatal("loop stopped")
			}
			<-done
		}
		return conns, busy
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := testenv.WaitFor(ctx, func() error {
		if conns, busy := idle(); conns != 2 || busy != 0 {
			return fmt.Errorf("%d connections on the record layer, %d still holding AEAD states or buffers", conns, busy)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c1.ask(t, recReq); got != "hello-rec" {
		t.Fatalf("after idle: got %q", got)
	}
	get()
}

// TestTLSRecordsSecretsBounded: the key log keeps nothing once the
// handshakes ended, failed ones included, takes no line for a random no
// handshake registered, and serves neither of two handshakes with the
// same client random.
func TestTLSRecordsSecretsBounded(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-rec") })
	bad := cc.Clone()
	bad.ServerName = "b.test" // the client refuses the certificate after the server's Finished
	for range 5 {
		if c, err := tls.Dial("tcp", lb.addr, bad); err == nil {
			c.Close()
			t.Fatal("handshake with the wrong name succeeded")
		}
		c := dialTLS(t, lb.addr, cc)
		if got := c.ask(t, recReq); got != "hello-rec" {
			t.Fatalf("got %q", got)
		}
		c.Close()
	}
	s := lb.listeners["web"].tlsL.secrets
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testenv.WaitFor(ctx, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if n := len(s.m); n != 0 {
			return fmt.Errorf("%d key log entries after the handshakes", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.served.Load(); n != 5 {
		t.Fatalf("%d connections of 5 on the record layer", n)
	}

	log := newSecretLog()
	var r [32]byte
	r[0] = 7
	line := []byte("CLIENT_TRAFFIC_SECRET_0 " + hex.EncodeToString(r[:]) + " " + strings.Repeat("ab", 32) + "\n")
	log.Write(line)
	if len(log.m) != 0 {
		t.Fatal("a line for an unregistered random was kept")
	}
	log.begin(r)
	log.Write(line)
	if e := log.take(r); e == nil || len(e.client) != 32 || len(log.m) != 0 {
		t.Fatalf("take: %+v, %d left", e, len(log.m))
	}
	log.begin(r)
	log.begin(r) // the same ClientHello twice
	log.Write(line)
	if e := log.take(r); e != nil {
		t.Fatal("a duplicated random was served")
	}
	if e := log.take(r); e != nil || len(log.m) != 0 {
		t.Fatalf("second duplicate: %+v, %d left", e, len(log.m))
	}
}

// FuzzTLSRecordOpen: whatever bytes come as records, opening and handling
// them does not panic, and what opens has a content type a client may
// send.
func FuzzTLSRecordOpen(f *testing.F) {
	secret := bytes.Repeat([]byte{1}, 32)
	var out recDir
	if err := out.setSecret(tls.TLS_AES_128_GCM_SHA256, secret); err != nil {
		f.Fatal(err)
	}
	var seeds []byte
	for _, p := range []string{"GET / HTTP/1.1\r\n\r\n", "", "x"} {
		seeds, _ = out.seal(seeds, recTypeData, []byte(p))
	}
	seeds, _ = out.seal(seeds, recTypeHS, []byte{hsTypeKeyUpd, 0, 0, 1, 1})
	seeds, _ = out.seal(seeds, recTypeAlert, []byte{1, 0})
	f.Add(seeds)
	var split recDir // a KeyUpdate in two records (RFC 8446 5.1)
	split.setSecret(tls.TLS_AES_128_GCM_SHA256, secret)
	seeds, _ = split.seal(nil, recTypeHS, []byte{hsTypeKeyUpd, 0})
	seeds, _ = split.seal(seeds, recTypeHS, []byte{0, 1, 0})
	f.Add(seeds)
	f.Add([]byte{recTypeData, 3, 3, 0x41, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r tlsRec
		if err := r.in.setSecret(tls.TLS_AES_128_GCM_SHA256, secret); err != nil {
			t.Fatal(err)
		}
		for len(b) > 0 {
			n, err := recordLen(b)
			if err != nil || n == 0 || n > len(b) {
				return
			}
			typ, data, err := r.in.open(b[:n])
			if err != nil {
				return
			}
			if typ != recTypeData && typ != recTypeHS && typ != recTypeAlert {
				t.Fatalf("opened a record of type %d", typ)
			}
			if _, _, err := r.handle(typ, data); err != nil {
				return
			}
			b = b[n:]
		}
	})
}

// TestTLSRecordsOff: limits.tls_records: false keeps TLS 1.3 connections on
// crypto/tls (no key log at all), serving as before.
func TestTLSRecordsOff(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-rec") })
	cfg := baseConfig(be.addr)
	cfg.Limits.DisableTLSRecords = true
	lb, cc := tlsFastLB(t, cfg)
	if s := lb.listeners["web"].tlsL.secrets; s != nil {
		t.Fatal("key log set with the record layer off")
	}
	c := dialTLS(t, lb.addr, cc)
	if got := c.ask(t, recReq); got != "hello-rec" {
		t.Fatalf("got %q", got)
	}
}
