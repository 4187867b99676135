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
//   - the pipe reads the socket ahead, as much as it holds (one read
//     takes a client's whole flight: change_cipher_spec, Finished and
//     often its first request), but hands crypto/tls one record per Read
//     (the header, then the body), so when the handshake returns, the
//     tls.Conn holds no byte past the client's Finished: the client's
//     first record under its application key is in the pipe's read-ahead
//     or still in the socket, and its sequence number is 0 (RFC 8446
//     5.3); what was read ahead is read first, by our layer or by the
//     tls.Conn;
//   - the pipe reads the client random from the ClientHello it carries
//     and registers it with the listener's secretLog, the tls.Config's
//     KeyLogWriter, which keeps the lines crypto/tls writes for it
//     (SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0,
//     SERVER_TRAFFIC_SECRET_0) and nothing for a random no pipe
//     registered; the entry goes when the pipe takes it, after the
//     handshake, whether it succeeded or not;
//   - the pipe keeps a copy of what crypto/tls wrote, and after the
//     handshake walks its record headers and opens the records under
//     the server application key (the NewSessionTicket messages): the
//     first of them must open at sequence number 0 and the rest in
//     turn, which proves the secret is this connection's and gives our
//     first sequence number (appSeq). With no ticket sent, every
//     protected record must open under the server handshake key
//     instead, and the number is 0.
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

// aheadSize is the size of a pipe's read-ahead buffer: a client's
// first flight (a ClientHello with a post-quantum key share is about
// 1.5 KB), or its second and its first request, in one read.
const aheadSize = 4 << 10

// aheadBufs lends the pipes' read-ahead buffers.
var aheadBufs = sync.Pool{New: func() any { b := make([]byte, aheadSize); return &b }}

// readAhead is the pipe's Read while its handshake is watched, and after
// it while bytes read ahead remain. While watched, it reads the socket
// (conn) only when nothing read ahead remains, and hands crypto/tls at
// most the rest of the current record header or body (readLimit).
func (p *tlsPipe) readAhead(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w := p.watch
	if len(p.ahead) == 0 {
		if p.aheadBuf == nil {
			p.aheadBuf = aheadBufs.Get().(*[]byte)
		}
		// A socket error with data comes again at the next read.
		n, err := p.conn.Read(*p.aheadBuf)
		if n == 0 {
			return 0, err
		}
		p.ahead = (*p.aheadBuf)[:n]
	}
	k := len(b)
	if w != nil {
		k = w.readLimit(k)
	}
	n := copy(b[:k], p.ahead)
	p.ahead = p.ahead[n:]
	if w != nil {
		w.saw(b[:n])
	} else if len(p.ahead) == 0 {
		p.releaseAhead()
	}
	return n, nil
}

// takeAhead moves what was read ahead and not handed out to dst (the
// record layer's input buffer) and returns how much; dst must hold
// aheadSize bytes.
func (p *tlsPipe) takeAhead(dst []byte) int {
	n := copy(dst, p.ahead)
	p.releaseAhead()
	return n
}

// releaseAhead gives the read-ahead buffer back; what it held is dropped.
func (p *tlsPipe) releaseAhead() {
	if p.aheadBuf != nil {
		aheadBufs.Put(p.aheadBuf)
	}
	p.ahead, p.aheadBuf = nil, nil
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
	if len(p.ahead) == 0 {
		p.releaseAhead()
	}
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
	// The out AEAD state appSeq built protects the first answer; the
	// loop's sweep drops it if the connection stays idle.
	if _, ok := appSeq(w.written, &r.out, e.serverHS); !ok {
		return nil
	}
	w.log.served.Add(1)
	return r
}

// appSeq establishes out's first sequence number from what the server
// wrote in its handshake (RFC 8446 5.2, 5.3: every record after the
// ServerHello is protected, the keys change only forward, and each key's
// records count from 0). out holds the server application secret; hs is
// the server handshake secret. Walking the record headers, it looks for
// the first protected record that opens under out at sequence number 0
// (those under hs before it do not: a failed open costs one AES-GCM or
// ChaCha20-Poly1305 pass over the record, with no key derived and no AEAD
// state built for hs), and every record after it must open in turn at 1,
// 2...; the next sequence number is how many did. Each must carry
// handshake messages (NewSessionTicket), and their opening shows the
// secret is this connection's. When none opens (no tickets were sent),
// every protected record must open under hs instead, and the sequence
// number is 0. false: the records are not as they must be. written is
// left as it was; out keeps its AEAD state for the first record it
// protects.
func appSeq(written []byte, out *recDir, hs []byte) (uint64, bool) {
	var spans [12][2]int // the protected records (start, end) in written
	prot := spans[:0]
	biggest := 0
	for i := 0; i < len(written); {
		n, err := recordLen(written[i:])
		if err != nil || n == 0 || i+n > len(written) {
			return 0, false
		}
		if written[i] == recTypeData {
			prot = append(prot, [2]int{i, i + n})
			biggest = max(biggest, n)
		} else if len(prot) > 0 {
			// ServerHello, HelloRetryRequest, change_cipher_spec: in
			// the clear, before any protected record (5, D.4).
			return 0, false
		}
		i += n
	}
	if len(prot) == 0 {
		return 0, false // EncryptedExtensions at least is protected (4.3.1)
	}
	scratch := make([]byte, 0, biggest)
	for first := range prot {
		out.seq = 0
		if !out.openHandshake(written[prot[first][0]:prot[first][1]], scratch) {
			continue
		}
		for _, sp := range prot[first+1:] {
			if !out.openHandshake(written[sp[0]:sp[1]], scratch) {
				return 0, false
			}
		}
		return out.seq, true
	}
	var hd recDir
	if hd.setSecret(out.suite, hs) != nil {
		return 0, false
	}
	for _, sp := range prot {
		if !hd.openHandshake(written[sp[0]:sp[1]], scratch) {
			return 0, false
		}
	}
	out.seq = 0
	return 0, true
}

// openHandshake opens the protected record rec into scratch (rec stays
// as it was) and tells whether it opened at the direction's sequence
// number and carries handshake messages; the sequence number moves on
// when it did.
func (d *recDir) openHandshake(rec, scratch []byte) bool {
	a, err := d.cipher()
	if err != nil {
		return false
	}
	nonce := d.nonce()
	pt, err := a.Open(scratch[:0], nonce[:], rec[recHeaderLen:], rec[:recHeaderLen])
	if err != nil {
		return false
	}
	d.seq++
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i-- // padding (5.4)
	}
	return i >= 0 && pt[i] == recTypeHS
}
