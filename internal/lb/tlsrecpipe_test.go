package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestTLSRecordsAppSeq checks how the server's handshake records give the
// first sequence number under the application key: the records under it
// are counted only when each opens in turn from 0, the handshake key's
// are opened when no ticket was sent, and anything out of order, damaged
// or not a handshake message refuses the connection.
func TestTLSRecordsAppSeq(t *testing.T) {
	const suite = tls.TLS_AES_128_GCM_SHA256
	hs, app := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	clear := []byte{recTypeHS, 3, 3, 0, 4, 2, 0, 0, 0} // a ServerHello's place
	ccs := []byte{recTypeCCS, 3, 3, 0, 1, 1}
	ticket := []byte{4, 0, 0, 1, 0} // a NewSessionTicket's header and a byte
	// flight returns what a server wrote: the clear records, nHS records
	// under hs, then records under app at the sequence numbers appSeqs,
	// each of inner type typ.
	flight := func(nHS int, appSeqs []uint64, typ byte) []byte {
		var h, a recDir
		if h.setSecret(suite, hs) != nil || a.setSecret(suite, app) != nil {
			t.Fatal("setSecret")
		}
		b := append(append([]byte(nil), clear...), ccs...)
		var err error
		for range nHS {
			if b, err = h.seal(b, recTypeHS, bytes.Repeat([]byte{8}, 900)); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range appSeqs {
			a.seq = n
			if b, err = a.seal(b, typ, ticket); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	seq := func(written []byte) (uint64, bool) {
		var out recDir
		if err := out.setSecret(suite, app); err != nil {
			t.Fatal(err)
		}
		out.seq = 99
		keep := append([]byte(nil), written...)
		n, ok := appSeq(written, &out, hs)
		if !bytes.Equal(keep, written) {
			t.Fatal("appSeq changed the records")
		}
		if ok && out.seq != n {
			t.Fatalf("out.seq %d, returned %d", out.seq, n)
		}
		return n, ok
	}
	for _, tc := range []struct {
		name      string
		written   []byte
		want      uint64
		wantValid bool
	}{
		{"one ticket", flight(4, []uint64{0}, recTypeHS), 1, true},
		{"two tickets", flight(4, []uint64{0, 1}, recTypeHS), 2, true},
		{"three tickets", flight(4, []uint64{0, 1, 2}, recTypeHS), 3, true},
		{"no ticket", flight(4, nil, recTypeHS), 0, true},
		{"a ticket's number skipped", flight(4, []uint64{0, 2, 3}, recTypeHS), 0, false},
		{"a ticket twice", flight(4, []uint64{0, 0}, recTypeHS), 0, false},
		{"first ticket at 1", flight(4, []uint64{1, 2}, recTypeHS), 0, false},
		{"application data under app", flight(4, []uint64{0}, recTypeData), 0, false},
		{"nothing protected", flight(0, nil, recTypeHS), 0, false},
		{"clear after protected", append(flight(4, []uint64{0}, recTypeHS), ccs...), 0, false},
		{"cut record", flight(4, []uint64{0}, recTypeHS)[:100], 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := seq(tc.written)
			if ok != tc.wantValid || ok && n != tc.want {
				t.Fatalf("appSeq = %d, %v; want %d, %v", n, ok, tc.want, tc.wantValid)
			}
		})
	}
	// A damaged byte in a record that is opened refuses the records: a
	// ticket, or with no ticket a record under hs. (With a ticket the
	// records under hs are not opened: crypto/tls wrote them, and the
	// ticket alone shows the application secret is this connection's.)
	one, none := flight(4, []uint64{0}, recTypeHS), flight(4, nil, recTypeHS)
	for _, d := range []struct {
		w  []byte
		at int
	}{{one, len(one) - 3}, {none, len(clear) + len(ccs) + 10}, {none, len(none) - 3}} {
		w := append([]byte(nil), d.w...)
		w[d.at] ^= 1
		if _, ok := seq(w); ok {
			t.Errorf("damaged byte at %d of %d accepted", d.at, len(w))
		}
	}
}

// flightConn is a client's socket that sends what it is given only when
// its client reads: everything the client writes between two reads goes
// out in one write, as a client does that sends its Finished and first
// requests in one flight.
type flightConn struct {
	net.Conn
	pend []byte
}

func (c *flightConn) Write(p []byte) (int, error) {
	c.pend = append(c.pend, p...)
	return len(p), nil
}

func (c *flightConn) Read(p []byte) (int, error) {
	if len(c.pend) > 0 {
		if _, err := c.Conn.Write(c.pend); err != nil {
			return 0, err
		}
		c.pend = nil
	}
	return c.Conn.Read(p)
}

// TestTLSRecordsFlightWithRequests: the requests that come in the same
// segment as the client's Finished, which the pipe reads ahead of
// crypto/tls, are answered: by our record layer (TLS 1.3), and by
// crypto/tls when it keeps the connection (a resumed TLS 1.2 session,
// whose client sends its Finished last).
func TestTLSRecordsFlightWithRequests(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-"+r.URL.Path) })
	ask := func(cfg *tls.Config) {
		t.Helper()
		raw, err := net.Dial("tcp", lb.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(20 * time.Second))
		tc := tls.Client(&flightConn{Conn: raw}, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tc, "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
		br := bufio.NewReader(tc)
		for _, want := range []string{"hello-/1", "hello-/2"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != want {
				t.Fatalf("got %q, %v; want %q", body, err, want)
			}
		}
	}
	v13 := cc.Clone()
	v13.MinVersion = tls.VersionTLS13
	ask(v13)
	if n := recServed(t, lb); n != 1 {
		t.Fatalf("%d connections on our record layer, want 1", n)
	}
	v12 := cc.Clone()
	v12.MaxVersion = tls.VersionTLS12
	v12.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	ask(v12) // a full handshake: the client reads the server's Finished last
	ask(v12) // resumed: the client's Finished comes last, with the requests
	if n := recServed(t, lb); n != 1 {
		t.Fatalf("%d connections on our record layer, want 1", n)
	}
}

// TestTLSKeyShareGroups: the listener takes the group of a key share the
// client sent, with no HelloRetryRequest: X25519 for a client that
// sends that share alone (OpenSSL 3.0's ClientHello, wrk's and h2load's),
// the post-quantum hybrid for one that sends it (Go's default), P-256
// for one that supports only it; and each is served by our record layer.
// (crypto/tls's client orders the groups itself and sends the first
// one's share, and X25519's with a hybrid.)
func TestTLSKeyShareGroups(t *testing.T) {
	lb, _, cc := recLB(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-rec") })
	for i, tc := range []struct {
		prefs []tls.CurveID // the client's groups
		want  tls.CurveID
	}{
		{[]tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}, tls.X25519},
		{nil, tls.X25519MLKEM768},
		{[]tls.CurveID{tls.CurveP256}, tls.CurveP256},
	} {
		cfg := cc.Clone()
		cfg.CurvePreferences = tc.prefs
		c := dialTLS(t, lb.addr, cfg)
		cs := c.ConnectionState()
		if cs.CurveID != tc.want || cs.HelloRetryRequest {
			t.Errorf("client preferring %v: group %v, HelloRetryRequest %v; want %v and none", tc.prefs, cs.CurveID, cs.HelloRetryRequest, tc.want)
		}
		if got := c.ask(t, recReq); got != "hello-rec" {
			t.Fatalf("got %q", got)
		}
		c.Close()
		if n := recServed(t, lb); n != int64(i+1) {
			t.Fatalf("%d connections on our record layer, want %d", n, i+1)
		}
	}
}
