package lb

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"sync"
	"sync/atomic"
)

// How a connection's records move from crypto/tls to tlsRec. crypto/tls
// does the handshake as before, over a tlsPipe that watches it
// (recWatch):
//
//   - the pipe hands crypto/tls one record per Read (the header, then the
//     body), so when the handshake returns, the tls.Conn holds no byte
//     past the client's Finished: the client's first record under its
//     application key is still in the socket, and its sequence number
//     is 0 (RFC 8446 5.3);
//   - the pipe reads the client random from the ClientHello it carries
//     and registers it with the listener's secretLog, the tls.Config's
//     KeyLogWriter, which keeps the lines crypto/tls writes for it
//     (SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0,
//     SERVER_TRAFFIC_SECRET_0) and nothing for a random no pipe
//     registered; the entry goes when the pipe takes it, after the
//     handshake, whether it succeeded or not;
//   - the pipe keeps a copy of what crypto/tls wrote, and after the
//     handshake opens each protected record of it: first under the
//     server handshake key, then under the server application key
//     (the NewSessionTicket messages). Every record must open, in
//     order, with consecutive sequence numbers: that proves the
//     secrets are this connection's and gives our first sequence
//     number.
//
// Anything else (TLS 1.2, another suite, a ClientHello split before its
// random, two handshakes with the same client random, a record that does
// not open) leaves the connection on its tls.Conn, as before.

// secretLog is a TLS listener's KeyLogWriter.
type secretLog struct {
	mu sync.Mutex
	m  map[[32]byte]*secretEntry
	// served counts the connections handed to a tlsRec (for tests and
	// the curious).
	served atomic.Int64
}

type secretEntry struct {
	refs                   int  // pipes that registered the random
	dup                    bool // more than one: none of them is served
	serverHS, client, serv []byte
}

func newSecretLog() *secretLog { return &secretLog{m: map[[32]byte]*secretEntry{}} }

// begin registers a handshake's client random.
func (s *secretLog) begin(random [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[random]
	if e == nil {
		e = &secretEntry{}
		s.m[random] = e
	}
	e.refs++
	if e.refs > 1 {
		e.dup = true
	}
}

// take removes the handshake's registration and returns its secrets (nil
// when another handshake had the same random).
func (s *secretLog) take(random [32]byte) *secretEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[random]
	if e == nil {
		return nil
	}
	if e.refs--; e.refs <= 0 {
		delete(s.m, random)
	}
	if e.dup {
		return nil
	}
	return e
}

// Write takes one key log line, "LABEL <client random> <secret>" in hex
// (crypto/tls writes each in one call).
func (s *secretLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 || len(f[1]) != 64 {
		return len(line), nil
	}
	var random [32]byte
	if _, err := hex.Decode(random[:], f[1]); err != nil {
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return len(line), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[random]
	if e == nil {
		return len(line), nil
	}
	switch string(f[0]) {
	case "SERVER_HANDSHAKE_TRAFFIC_SECRET":
		e.serverHS = secret
	case "CLIENT_TRAFFIC_SECRET_0":
		e.client = secret
	case "SERVER_TRAFFIC_SECRET_0":
		e.serv = secret
	}
	return len(line), nil
}

// recWatch is a tlsPipe's watch over a handshake.
type recWatch struct {
	log     *secretLog
	hdr     [recHeaderLen]byte
	hn      int // header bytes read of the current record
	left    int // body bytes of the current record not read yet
	first   [38]byte
	fn      int  // bytes of the first record's body kept in first
	records int  // records read (the first has the random)
	random  bool // the random was registered
	rnd     [32]byte
	written []byte // what crypto/tls wrote
}

// readLimit returns how much of the next Read may go to crypto/tls: the
// rest of the current header or body.
func (w *recWatch) readLimit(n int) int {
	if w.left == 0 {
		return min(n, recHeaderLen-w.hn)
	}
	return min(n, w.left)
}

// saw accounts for b, read from the socket and handed to crypto/tls.
func (w *recWatch) saw(b []byte) {
	if w.left == 0 {
		w.hn += copy(w.hdr[w.hn:], b)
		if w.hn == recHeaderLen {
			w.hn = 0
			w.left = int(w.hdr[3])<<8 | int(w.hdr[4])
			w.records++
		}
		return
	}
	if w.records == 1 && w.fn < len(w.first) {
		w.fn += copy(w.first[w.fn:], b)
		// Handshake header (4 bytes), legacy_version (2), random (32)
		// of a ClientHello (RFC 8446 4.1.2).
		if w.fn == len(w.first) && w.hdr[0] == recTypeHS && w.first[0] == 1 {
			copy(w.rnd[:], w.first[6:])
			w.random = true
			w.log.begin(w.rnd)
		}
	}
	w.left -= len(b)
}

// takeRecords ends the watch after tc's handshake and returns the
// connection's record layer, or nil when it stays on tc. The secrets'
// entry goes either way.
func (p *tlsPipe) takeRecords(tc *tls.Conn, ok bool) *tlsRec {
	w := p.watch
	if w == nil {
		return nil
	}
	p.watch = nil
	if !w.random {
		return nil
	}
	e := w.log.take(w.rnd)
	if !ok || e == nil || e.client == nil || e.serv == nil || e.serverHS == nil || w.hn != 0 || w.left != 0 {
		return nil
	}
	cs := tc.ConnectionState()
	if cs.Version != tls.VersionTLS13 || !recSuite(cs.CipherSuite) {
		return nil
	}
	r := &tlsRec{cs: &cs}
	r.in.used, r.out.used = &r.used, &r.used
	if r.in.setSecret(cs.CipherSuite, e.client) != nil || r.out.setSecret(cs.CipherSuite, e.serv) != nil {
		return nil
	}
	seq, ok := writtenUnder(w.written, cs.CipherSuite, e.serverHS, e.serv)
	if !ok {
		return nil
	}
	r.out.seq = seq
	r.idle()
	w.log.served.Add(1)
	return r
}

// writtenUnder opens every protected record of what the server wrote in
// its handshake: those under the handshake secret hs first, then those
// under the application secret app. It returns how many app protected
// (the next sequence number under app), and false when any record did
// not open so (RFC 8446 5.2: every record after the ServerHello is
// protected, the keys change only forward, and sequence numbers count
// each key's records from 0, 5.3).
func writtenUnder(written []byte, suite uint16, hs, app []byte) (uint64, bool) {
	var hd, ad recDir
	if hd.setSecret(suite, hs) != nil || ad.setSecret(suite, app) != nil {
		return 0, false
	}
	b := append([]byte(nil), written...) // opened in place
	onApp := false
	for len(b) > 0 {
		n, err := recordLen(b)
		if err != nil || n == 0 || n > len(b) {
			return 0, false
		}
		rec := b[:n]
		b = b[n:]
		if rec[0] != recTypeData {
			// ServerHello, HelloRetryRequest, change_cipher_spec: in the
			// clear, before any protected record (5, D.4).
			if hd.seq > 0 || onApp {
				return 0, false
			}
			continue
		}
		if !onApp {
			save := append([]byte(nil), rec...)
			if _, _, err := hd.open(rec); err == nil {
				continue
			}
			copy(rec, save)
			onApp = true
		}
		if _, _, err := ad.open(rec); err != nil {
			return 0, false
		}
	}
	return ad.seq, true
}
