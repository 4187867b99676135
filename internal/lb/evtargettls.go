package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync/atomic"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// HTTPS targets of HTTP/1.1 pools on the event loops. A loop's new
// connection to such a target is made off the loop, in a goroutine: TCP,
// then crypto/tls's client handshake with the pool's config for the
// target (targetTLS.forTarget: roots, server name, client certificate,
// the pool's session cache, so a session that the pool's other
// connections stored is resumed), bounded by the pool's connect timeout.
// Failures are counted and logged as on the net/http path
// (shoal_lb_target_tls_failures_total) and are dial errors: the request
// never reached the target and may go to another. Requests wait for a
// connection in the loop's dialQueue (at most maxHandshakes in flight
// per target, however long requests wait; the next slot and a connection
// freed go to the oldest waiting request; a request that gets no slot
// within its try timeout is answered 503, as HAProxy's `timeout queue`).
//
// The handshake runs over a hsConn, which hands crypto/tls one record per
// Read (recWatch's limit), so nothing past the server's Finished is read
// when it returns, and which registers the client random of the
// ClientHello it writes with the connection's own secretLog, the
// config's KeyLogWriter. A TLS 1.3 handshake with a suite tlsRec serves
// gives the record layer its secrets, here in the client's direction:
// out (what we send) under the client application traffic secret, in
// under the server's, both from sequence number 0 (RFC 8446 5.3: the
// client sent nothing and crypto/tls read nothing under them). The loop
// then drives the connection as an evTLS on our record layer, like a
// listener's: the server's NewSessionTicket messages go to crypto/tls,
// which stores their sessions in the pool's cache (tlsRec.fromServer,
// serverTickets, ticketFeed; until the connection's first answer, later
// ones are dropped), KeyUpdate is followed and answered, the server's
// close_notify or a FIN between records ends the connection as io.EOF
// (crypto/tls accepts the FIN too), and the loop's close sends our
// close_notify. An idle pooled connection stays pooled across records
// that bring no data (a late ticket) and closes on anything else.
//
// A handshake the record layer does not serve (TLS 1.2) is driven on the
// loop through its tls.Conn for the request that made it, as listeners
// drive such connections, and the pool's later requests go through
// net/http (upstreams.tlsLegacy) until a reload gives it new upstreams.

// hsTypeTicket is NewSessionTicket's handshake type (RFC 8446 4.6.1).
const hsTypeTicket = 4

// serverTickets takes the NewSessionTicket messages (RFC 8446 4.6.1) at
// the start of a server's handshake record, each whole in it (a ticket
// split across records is unexpected_message), gives them to r.ticket
// and returns the rest, for postHandshake. (The rest of a KeyUpdate split
// across records never starts with a ticket's type: its bytes after the
// type are 0, 0, 1 and 0 or 1.)
func (r *tlsRec) serverTickets(data []byte) ([]byte, error) {
	for len(data) > 0 && data[0] == hsTypeTicket {
		if len(data) < 4 {
			return nil, recAlert(alertUnexpected)
		}
		n := 4 + (int(data[1])<<16 | int(data[2])<<8 | int(data[3]))
		if len(data) < n {
			return nil, recAlert(alertUnexpected)
		}
		if r.ticket != nil {
			r.ticket(data[:n])
		}
		data = data[n:]
	}
	return data, nil
}

// loops reports whether the loops' own target connections serve the
// pool: a plain HTTP/1.1 pool, or an HTTP/1.1 pool over TLS whose
// targets so far all spoke TLS 1.3.
func (pe *poolEntry) loops() bool {
	return pe.fast() || pe.cfg.Protocol == ProtocolHTTP1 && pe.tls != nil && !pe.up.tlsLegacy.Load()
}

// hsConn is the socket under a target handshake's tls.Conn, and after
// the handshake the feed of the server's tickets to it (ticketFeed).
type hsConn struct {
	net.Conn
	w      recWatch // only its record boundaries: its log is never read
	log    *secretLog
	rnd    [32]byte
	random bool
	// fed: the socket went to a loop; Read hands out feed, then answers
	// "not yet" (errTLSWait).
	fed  bool
	feed []byte
}

func (c *hsConn) Read(b []byte) (int, error) {
	if c.fed {
		if len(c.feed) == 0 {
			return 0, errTLSWait
		}
		n := copy(b, c.feed)
		c.feed = c.feed[n:]
		return n, nil
	}
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.Conn.Read(b[:c.w.readLimit(len(b))])
	c.w.saw(b[:n])
	return n, err
}

// Write registers the client random of the ClientHello, the first record
// crypto/tls writes (a handshake record, type 1; RFC 8446 4.1.2), before
// any key log line for it is written.
func (c *hsConn) Write(b []byte) (int, error) {
	if c.fed {
		return 0, errRecEnded // reading a ticket writes nothing
	}
	if !c.random && len(b) >= recHeaderLen+4+2+32 && b[0] == recTypeHS && b[recHeaderLen] == 1 {
		copy(c.rnd[:], b[recHeaderLen+6:])
		c.random = true
		c.log.begin(c.rnd)
	}
	return c.Conn.Write(b)
}

// targetConn is a finished handshake with a target, for a loop.
type targetConn struct {
	fd int
	t  *evTLS
}

// dialTargetTLS connects to addr and does the handshake with conf (a
// forTarget config), within ctx. The socket comes back as a descriptor of
// its own for a loop, with the layer that serves it: rec when the
// handshake was TLS 1.3 with a suite tlsRec serves, else tc.
func dialTargetTLS(ctx context.Context, addr string, conf *tls.Config) (*targetConn, error) {
	d := net.Dialer{KeepAlive: upKeepAlive}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	log := newSecretLog()
	hs := &hsConn{Conn: raw, w: recWatch{log: log}, log: log}
	conf.KeyLogWriter = log
	pipe := newTLSPipe(hs)
	tc := tls.Client(pipe, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with target %s: %w", addr, err)
	}
	cs := tc.ConnectionState()
	t := &evTLS{tc: tc, pipe: pipe}
	var e *secretEntry
	if hs.random {
		e = log.take(hs.rnd)
	}
	if cs.Version == tls.VersionTLS13 && recSuite(cs.CipherSuite) && e != nil && e.client != nil && e.serv != nil && hs.w.hn == 0 && hs.w.left == 0 {
		r := &tlsRec{cs: &cs, fromServer: true}
		r.in.used, r.out.used = &r.used, &r.used
		f := &ticketFeed{tc: tc, hs: hs}
		if r.out.setSecret(cs.CipherSuite, e.client) == nil && r.in.setSecret(cs.CipherSuite, e.serv) == nil && f.dir.setSecret(cs.CipherSuite, e.serv) == nil {
			r.ticket = f.give
			t.tc, t.rec, t.pipe = nil, r, &tlsPipe{fd: -1, laddr: pipe.laddr, raddr: pipe.raddr}
		}
	}
	fd, _, err := detachFD(raw)
	if err != nil {
		raw.Close()
		return nil, &dialError{err}
	}
	hs.fed = true
	t.pipe.conn, t.pipe.fd = nil, fd
	return &targetConn{fd: fd, t: t}, nil
}

// ticketFeed gives crypto/tls the server's NewSessionTicket messages that
// our record layer read, so that the pool's session cache gets their
// sessions: crypto/tls alone can make one, from the resumption secret it
// keeps. The handshake's tls.Conn read no record under the server's
// application key, so each message is sealed again under that key, at
// the sequence number tc expects (the records fed so far), and tc reads
// it from its hsConn, which then answers "not yet": tc stores the session
// and returns that temporary error, which it does not keep (crypto/tls
// conn.go, readRecordOrCCS). tc never sees the real records, so a
// KeyUpdate does not concern it. The feed ends when a message cannot be
// fed, and after the connection's first answer (evUp.endTicketFeed).
type ticketFeed struct {
	tc  *tls.Conn // nil once the feed ended
	hs  *hsConn
	dir recDir // the server's first application traffic secret
}

func (f *ticketFeed) give(msg []byte) {
	if f.tc == nil {
		return
	}
	rec, err := f.dir.seal(f.hs.feed[:0], recTypeHS, msg)
	if err == nil {
		f.hs.feed = rec
		var b [1]byte
		_, err = f.tc.Read(b[:])
	}
	if err != errTLSWait {
		f.tc, f.hs.feed = nil, nil // tc refused it: no more tickets
	}
}

// maxHandshakes bounds the handshakes in flight from one loop to one
// target: more requests wait in the dialQueue for a connection that a
// handshake makes or an answer frees, so a burst does not start thousands
// of handshakes that starve each other past the connect timeout. The
// bound holds under any load: a request that waited long gets the next
// slot (the queue is oldest first), never one beyond the bound.
const maxHandshakes = 16

// errQueueTimeout fails a request that waited its try timeout in a
// dialQueue without a handshake of its own or a connection another's
// freed: the balancer's own overload, answered 503 and not retried.
var errQueueTimeout = errors.New("no connection to the target within the try timeout: too many requests wait for one")

// dialQueue is a loop's requests waiting for a connection to one TLS
// target, oldest first: each on an evUp in usHandshake, with its
// handshake in flight (stopHS set; inFlight of them) or queued.
type dialQueue struct {
	ups      []*evUp
	inFlight int
}

// dialTLS makes u, new and carrying a request of pe, wait for a
// connection to its TLS target: its own handshake, started now while
// fewer than maxHandshakes are in flight or later when its turn comes
// (undial), or another's connection (takeWaiting). Queued, it waits
// until its try deadline (none when the pool's try timeout is off:
// handshakes in flight end within the connect timeout, so the queue
// moves); its handshake, once started, has the connect timeout.
func (u *evUp) dialTLS(pe *poolEntry) {
	u.state = usHandshake
	l := u.l
	if l.dialing == nil {
		l.dialing = map[upKey]*dialQueue{}
	}
	q := l.dialing[u.key]
	if q == nil {
		q = &dialQueue{}
		l.dialing[u.key] = q
	}
	q.ups = append(q.ups, u)
	u.queued = true
	if q.inFlight < maxHandshakes {
		u.handshakeTLS(pe, q)
		return
	}
	u.dl = 0
	if pe.cfg.TryTimeout > 0 {
		u.dl = l.now + pe.cfg.TryTimeout
	}
}

// dialExpired is the error of u, dialling, whose deadline passed:
// errQueueTimeout while it waited in its dialQueue without a handshake,
// else the connect timeout's.
func (u *evUp) dialExpired() error {
	if u.queued && u.stopHS == nil {
		return errQueueTimeout
	}
	return &dialError{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}}
}

// handshakeTLS makes u's connection to its target, of pe, in a
// goroutine; the loop takes it in tlsReady.
func (u *evUp) handshakeTLS(pe *poolEntry, q *dialQueue) {
	q.inFlight++
	ctx, cancel := context.WithTimeout(context.Background(), u.key.u.connectFor)
	u.stopHS = cancel
	u.dl = u.l.now + u.key.u.connectFor
	tt, l, addr := pe.tls, u.l, u.key.addr
	conf := tt.forTarget(addr)
	go func() {
		defer cancel()
		tcn, err := dialTargetTLS(ctx, addr, conf)
		if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			// (A handshake canceled because its connection closed is
			// no failure of the target's.)
			if _, ok := err.(*dialError); !ok {
				reason := "handshake"
				if noALPN(err) {
					reason = "alpn"
				}
				if f := tt.fails.Load(); f != nil {
					f.report(addr, reason, err)
				}
				err = &dialError{err}
			}
		}
		if err != nil {
			if _, ok := err.(*dialError); !ok {
				err = &dialError{err}
			}
		}
		// The loop takes the descriptor in tlsReady; when the loop ends
		// first (the balancer is closing), a task posted in its last
		// moments does not run and the descriptor is closed here.
		var taken atomic.Bool
		ran := make(chan struct{})
		if l.post(func() {
			if taken.CompareAndSwap(false, true) {
				u.tlsReady(pe, tcn, err)
			}
			close(ran)
		}) {
			select {
			case <-ran:
			case <-l.done:
			}
		}
		if taken.CompareAndSwap(false, true) && tcn != nil {
			netpoll.Close(tcn.fd)
		}
	}()
}

// tlsReady takes the outcome of handshakeTLS on the loop: the connection
// serves the waiting request, if any, or fails it.
func (u *evUp) tlsReady(pe *poolEntry, tcn *targetConn, err error) {
	if u.state != usHandshake {
		if tcn != nil {
			netpoll.Close(tcn.fd) // closed meanwhile (deadline, drain)
		}
		return
	}
	u.undial()
	u.stopHS = nil
	if err != nil {
		u.fail(err)
		return
	}
	tcn.t.l = u.l
	u.tls, u.fd = tcn.t, tcn.fd
	if tcn.t.rec != nil {
		u.key.u.tlsServed.Add(1)
	} else if !u.key.u.tlsLegacy.Swap(true) {
		u.l.logger().Warn("a target of the pool does not speak TLS 1.3: the pool's requests go through net/http",
			"pool", pe.cfg.Name, "target", u.key.addr, "tls_version", tls.VersionName(tcn.t.tc.ConnectionState().Version))
	}
	gen, aerr := u.l.add(u.fd, netpoll.In, u)
	if aerr != nil {
		u.fail(&dialError{fmt.Errorf("epoll_ctl: %w", aerr)})
		return
	}
	u.gen, u.events = gen, netpoll.In
	u.state = usFree
	if u.c == nil {
		u.pool() // its request went on another connection
		return
	}
	u.state = usSending
	u.dl = u.tryDeadline()
	u.send()
}

// undial takes u off its dialQueue (its handshake ended or was
// canceled, or it closed while queued); when that ends a handshake in
// flight, the oldest queued request gets one.
func (u *evUp) undial() {
	if !u.queued {
		return
	}
	u.queued = false
	q := u.l.dialing[u.key]
	if i := slices.Index(q.ups, u); i >= 0 {
		q.ups = slices.Delete(q.ups, i, i+1)
	}
	if u.stopHS != nil {
		q.inFlight--
	}
	if len(q.ups) == 0 {
		delete(u.l.dialing, u.key)
		return
	}
	for _, w := range q.ups {
		if q.inFlight >= maxHandshakes {
			return
		}
		if w.stopHS == nil && w.c != nil {
			w.handshakeTLS(w.c.pe, q)
		}
	}
}

// takeWaiting gives u, a connection to a TLS target that just became
// free, to the oldest request waiting for a handshake to the same target
// (as net/http's Transport hands a freed connection to a waiting
// request): under a burst, requests wait for the first connection free
// instead of each for its own handshake. The handshake goes on without
// its request and its connection is pooled. It reports whether u took
// one.
func (u *evUp) takeWaiting() bool {
	if u.tls == nil {
		return false // plain targets have no dial queue: no map lookup per reuse
	}
	q := u.l.dialing[u.key]
	if q == nil {
		return false
	}
	for _, w := range q.ups {
		if w.c == nil {
			continue
		}
		c := w.c
		w.c = nil
		if w.stopHS == nil {
			w.close() // queued: nothing more to wait for
		}
		u.state, u.dl, u.paused = usFree, 0, false
		u.l.putBuf(u.buf)
		u.buf = nil
		c.up = u
		u.start(c, c.target, c.pe.cfg)
		return true
	}
	return false
}

// idleRead reads what an idle TLS connection's target sent: records that
// bring no data (a NewSessionTicket after the handshake, a KeyUpdate)
// keep it pooled; data, an alert, a close_notify or the end close it.
func (u *evUp) idleRead() {
	var b [1]byte
	if n, err := u.tls.read(b[:]); n == 0 && err == netpoll.ErrAgain {
		return
	}
	u.close()
}

// endTicketFeed ends the feed of tickets to crypto/tls after the first
// answer: servers send theirs right after the handshake, and the
// handshake's tls.Conn (with its buffers) is not kept for the life of
// the connection. Later tickets are dropped.
func (u *evUp) endTicketFeed() {
	if u.tls != nil && u.tls.rec != nil {
		u.tls.rec.ticket = nil
	}
}

// readConn reads the target's bytes: the socket's, or on TLS the
// plaintext of its records, with netpoll.Read's results (n > 0, or
// ErrAgain, or 0 and nil at the end: on TLS a close_notify or a FIN
// between records).
func (u *evUp) readConn(p []byte) (int, error) {
	if u.tls != nil {
		n, err := u.tls.read(p)
		if err == io.EOF {
			err = nil
		}
		return n, err
	}
	return netpoll.Read(u.fd, p)
}

// writeConn writes to the target: on TLS, encrypted (an empty p sends the
// records still waiting; n is -1 with the error when nothing was taken).
func (u *evUp) writeConn(p []byte) (int, error) {
	if u.tls != nil {
		return u.tls.write(p, false)
	}
	return netpoll.Write(u.fd, p)
}

// unsent reports TLS records waiting for room in the socket.
func (u *evUp) unsent() bool { return u.tls != nil && u.tls.unsent() }

// more reports that TLS holds what the last read left, which no readiness
// report announces: data, or the end that came after it.
func (u *evUp) more() bool {
	return u.tls != nil && (u.tls.full || len(u.tls.plain) > 0 || u.tls.err != nil)
}

// tlsEnded reports that the target's records ended (a close_notify or
// alert read after the answer, or one sent) or brought more than the
// answer: the connection is not reused.
func (u *evUp) tlsEnded() bool {
	t := u.tls
	return t != nil && (t.err != nil || len(t.plain) > 0 || t.rec != nil && t.rec.ended)
}

// closeTLS ends the TLS layer before the socket closes: a close_notify
// when the socket takes it, and the buffers go back.
func (u *evUp) closeTLS() {
	u.undial()
	if u.stopHS != nil {
		u.stopHS()
		u.stopHS = nil
	}
	if u.tls == nil {
		return
	}
	if u.fd >= 0 {
		u.tls.closeNotify()
	}
	u.tls.releaseIn()
	u.tls = nil
}
