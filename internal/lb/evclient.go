package lb

import (
	"bytes"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
	"github.com/shoal-dev/shoal/internal/pool"
)

// Client connection states.
const (
	csIdle   = iota // waiting for (the rest of) a request
	csBusy          // a request is being proxied or its answer written
	csTunnel        // a WebSocket tunnel (evtunnel.go)
	csDone          // closed or handed over
)

// Response relay modes: how the target frames the body.
const (
	rmNone    = iota // no body (HEAD, 204, 304)
	rmFixed          // Content-Length
	rmChunked        // chunked, passed through as it is
	rmClose          // until the target closes; re-framed as chunked
)

// errClientGone is a client that closed its connection before its
// answer was complete.
var errClientGone = errors.New("client closed the connection")

// statusClientGone is recorded for a request whose client left (the
// status nginx logs for it).
const statusClientGone = 499

// evClient is one client connection on a loop. All its fields belong to
// the loop's goroutine.
type evClient struct {
	l       *evLoop
	fd      int
	gen     uint32
	events  netpoll.Events
	release func() // gives the listener's connection slot back
	client  netip.Addr
	ip      string
	remote  string
	tls     *evTLS // TLS connections' layer (evtls.go); nil on plain ones
	// h2 is the HTTP/2 stream this evClient serves (evh2stream.go): it
	// has no socket of its own, and its answer is framed on the stream.
	h2 *evH2Stream

	// Per-connection caches, so a request allocates nothing: the
	// Forwarded element for the last Host seen and the generated id.
	fwdHost []byte
	fwd     string
	idBuf   [idLen]byte

	buf  []byte // client bytes; unread are buf[r:w]
	r, w int
	out  []byte // the request for the target: head, then body
	wb   []byte // bytes for the client; wb[wo:] are not written yet
	wo   int
	// The request in flight: nil while the connection is idle with
	// nothing buffered (then it holds no buffer either).
	*evReq

	state   uint8
	served  bool          // a request was answered on the connection
	partial bool          // a head began: the header timeout runs
	dl      time.Duration // loop-time deadline; 0 = none

	// The request in flight.
	tbl      *table
	pe       *poolEntry
	pick     *pool.Key // what a sticky pool picks by (&key); nil for others
	up       *evUp
	tun      *evTunnel
	target   *pool.Target
	maxTries int
	try      int
	isHead   bool
	started  bool // answer bytes are queued: no retry
	wrote    bool // answer bytes reached the client: no error page either
	status   int  // the target's status, once started
	respDone bool // the answer is complete in wb
	mode     uint8
	remain   int64
	reuse    bool

	// Compression of the answer in flight (evcompress.go): z is its
	// encoder, nil when the body passes as the target sent it; zs is
	// where z writes, dc follows a chunked target body's framing.
	z      encoder
	zEnc   Encoding
	zLevel int
	zs     appendSink
	dc     h1.Dechunker
	skip   fieldSet

	// The asset cache (evcache.go): ckey is the request's key (a
	// scratch reused per request), waiting/waitTok a wait for another
	// request's fetch, capture the entry this one fills, tail a hit's
	// body, written after wb.
	ckey    []byte
	waiting bool
	waitTok uint32
	capture *cacheEntry
	tail    []byte
}

// evReq is the part of a client connection that only a request in
// flight needs: the parsed head, the exchange recorded for it, the
// inspection of its body and the targets tried. A connection takes one
// from its loop's free list with its read buffer and gives it back with
// the buffer once it is idle, so an idle keep-alive connection holds its
// evClient alone.
type evReq struct {
	h        h1.Request
	ex       exchange
	ins      h1.Inspector
	key      pool.Key     // views buf; valid while the request is in flight
	cookie   *http.Cookie // Set-Cookie of the last pick, if any
	triedArr [4]*pool.Target
	tried    []*pool.Target
}

// maxFreeReqs bounds a loop's free evReqs, as maxFreeBufs its buffers.
const maxFreeReqs = 256

func (l *evLoop) getReq() *evReq {
	if n := len(l.reqs); n > 0 {
		r := l.reqs[n-1]
		l.reqs[n-1] = nil
		l.reqs = l.reqs[:n-1]
		return r
	}
	return new(evReq)
}

// putReq takes r back, dropping what it points to (the route, the
// targets, the exchange's strings) so that a free one keeps nothing alive.
func (l *evLoop) putReq(r *evReq) {
	if r == nil {
		return
	}
	r.ex, r.key, r.cookie, r.triedArr, r.tried = exchange{}, pool.Key{}, nil, [4]*pool.Target{}, nil
	if len(l.reqs) < maxFreeReqs {
		l.reqs = append(l.reqs, r)
	}
}

// takeBufs gives an idle connection its read buffer and request state.
func (c *evClient) takeBufs() {
	c.buf = c.l.getBuf()
	if c.evReq == nil {
		c.evReq = c.l.getReq()
	}
}

// idleBufs gives back what an idle connection with nothing buffered no
// longer needs: its read buffer and request state.
func (c *evClient) idleBufs() {
	c.l.putBuf(c.buf)
	c.buf = nil
	c.l.putReq(c.evReq)
	c.evReq = nil
}

// register adds fd, the socket of a connection that just came to l, for
// h with events, and returns its generation. When the loop is quitting,
// or refuse (the caller's own reason) is set, or the poller will not take
// fd, the connection ends with closeFn (which closes fd) and ok is false.
func (l *evLoop) register(fd int, events netpoll.Events, h evHandler, refuse bool, closeFn func()) (gen uint32, ok bool) {
	if l.quit || refuse {
		closeFn()
		return 0, false
	}
	gen, err := l.add(fd, events, h)
	if err != nil {
		closeFn()
		return 0, false
	}
	return gen, true
}

// adoptClient registers an accepted connection with l; t is its TLS
// layer, nil for a plain connection.
func (l *evLoop) adoptClient(fd int, client netip.Addr, remote string, release func(), t *evTLS) {
	if t != nil && t.h2 {
		l.adoptH2(fd, client, remote, release, t)
		return
	}
	c := &evClient{l: l, fd: fd, release: release, client: client, ip: client.String(), remote: remote, events: netpoll.In, tls: t}
	gen, ok := l.register(fd, c.events, c, l.draining && t == nil, c.finalClose)
	if !ok {
		return
	}
	c.gen = gen
	l.clients[c] = struct{}{}
	c.dl = l.now + l.s.lim.ClientIdle
	if l.draining {
		// A TLS handshake that ended as a shutdown began: its first
		// request gets the header timeout, then the connection closes
		// after the answer (as evLoop.stopping treats fresh ones).
		c.dl = l.now + l.s.lim.HeaderTimeout
	}
	if t != nil {
		// The handshake may have read the first request's records along
		// with its last message: no readiness report announces them.
		c.readable()
	}
}

func (c *evClient) setEvents(ev netpoll.Events) {
	if ev != c.events && c.h2 == nil {
		c.events = ev
		c.l.mod(c.fd, c.gen, ev)
	}
}

func (c *evClient) event(ev netpoll.Events) {
	if c.state == csTunnel {
		c.tun.clientEvent(ev)
		return
	}
	if ev&netpoll.Out != 0 && (c.wo < len(c.wb) || len(c.tail) > 0 || c.tls != nil && c.tls.unsent()) {
		c.flush()
	}
	if c.state != csDone && ev&(netpoll.In|netpoll.Hup|netpoll.Err) != 0 {
		c.readable()
	}
}

// readable reads what the client sent. Waiting for a request, it serves
// it once whole; with a request in flight it keeps what comes (a
// pipelined request) while there is room, and notices a hang-up.
func (c *evClient) readable() {
	if c.buf == nil {
		c.takeBufs()
	}
	if c.w == len(c.buf) {
		if c.state == csIdle {
			c.serveNext() // hands a head that fills the buffer over
		} else {
			c.setEvents(c.events &^ netpoll.In) // read again after this answer
		}
		return
	}
	n, err := c.readConn(c.buf[c.w:])
	if n > 0 {
		c.w += n
		if c.state == csIdle {
			c.serveNext()
		}
		return
	}
	if err == netpoll.ErrAgain {
		if c.state == csIdle && c.w == 0 {
			c.idleBufs() // an idle connection keeps no buffer
		}
		return
	}
	if c.state == csBusy {
		c.abort(errClientGone)
		return
	}
	c.close()
}

// serveNext starts the request at buf[r:] when it is whole, hands the
// connection over when it is outside the fast subset, or waits for more.
func (c *evClient) serveNext() {
	lim := c.l.s.lim
	if c.r == c.w {
		// Nothing buffered: an idle connection keeps no buffer.
		c.r, c.w, c.partial = 0, 0, false
		c.dl = c.l.now + lim.ClientIdle
		c.idleBufs()
		return
	}
	p := c.buf[c.r:c.w]
	n := h1.HeadEnd(p, 0)
	if n < 0 {
		if p[0] == '\r' || p[0] == '\n' || len(p) > lim.MaxHeaderBytes || len(p) == len(c.buf) {
			c.handoff()
			return
		}
		c.compact()
		c.waitMore(lim)
		return
	}
	tbl := c.l.s.b.tbl.Load()
	if !h1.ParseRequest(p[:n], &c.h, fieldKinds) || !c.eligible(tbl, n) {
		c.handoff()
		return
	}
	if c.h.ContentLength > 0 && int64(len(p)) < int64(n)+c.h.ContentLength {
		// The body is still coming: wait for all of it when it fits the
		// buffer, else let net/http stream it.
		if int64(n)+c.h.ContentLength > int64(len(c.buf)) {
			c.handoff()
			return
		}
		c.compact()
		c.waitMore(lim)
		return
	}
	c.partial = false
	c.dispatch(tbl)
}

// waitMore waits for the rest of a request that began, within the
// header timeout counted from its first bytes.
func (c *evClient) waitMore(lim Limits) {
	if !c.partial {
		c.partial = true
		c.dl = c.l.now + lim.HeaderTimeout
	}
}

// compact moves the unread bytes to the start of the buffer (only
// between requests: spans index the request at buf[r:]).
func (c *evClient) compact() {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
}

// eligible applies the limits and routing checks that keep a parsed
// request on the fast path.
func (c *evClient) eligible(tbl *table, n int) bool {
	h := &c.h
	b := c.l.s.b
	lim := tbl.limits
	if n > lim.MaxHeaderBytes || int(h.Target.End-h.Target.Start) > lim.MaxURIBytes ||
		int(h.Target.End)+len(" HTTP/1.1") > lim.MaxRequestLine ||
		lim.MaxBodyBytes > 0 && h.ContentLength > lim.MaxBodyBytes || b.maint.Load() != nil || trusted(tbl.trusted, c.client) ||
		b.mayBeChallenge(bstr(c.buf[c.r:], h.Path)) || h.Upgrade && c.tls != nil {
		return false
	}
	return h.NRequestID <= 1
}

// bstr views buf[sp] as a string without copying; only for lookups that
// keep nothing.
func bstr(buf []byte, sp h1.Span) string {
	if sp.End <= sp.Start {
		return ""
	}
	return unsafe.String(&buf[sp.Start], int(sp.End-sp.Start))
}

// dispatch routes the parsed request at buf[r:] on tbl and starts its
// first attempt.
func (c *evClient) dispatch(tbl *table) {
	head := c.buf[c.r:]
	h := &c.h
	b := c.l.s.b
	rt := tbl.routers[c.l.s.name].match(bstr(head, h.Host), bstr(head, h.Path))
	if rt == nil || !rt.pool.loops() || h.Upgrade && rt.pool.tls != nil {
		// An HTTP/2 pool's targets, a TLS pool's that still speak TLS
		// 1.2 and WebSocket tunnels to TLS targets are reached through
		// net/http.
		c.handoff()
		return
	}
	c.l.s.requests.Add(1)
	c.state, c.dl = csBusy, 0
	ex := &c.ex
	*ex = exchange{start: time.Now(), listener: c.l.s.name, lm: c.l.s.lm, route: rt, closeAfter: h.Close, websocket: h.Upgrade}
	info := b.wantsInfo()
	if h.NRequestID == 1 && validRequestID(bstr(head, h.RequestID)) {
		ex.id = string(head[h.RequestID.Start:h.RequestID.End])
	} else if info {
		ex.id = b.ids.next()
	} else {
		// Nothing keeps ex.id beyond this request without an access log
		// or an observer: view the connection's buffer.
		n := b.ids.appendNext(c.idBuf[:0])
		ex.id, ex.idBorrowed = unsafe.String(&c.idBuf[0], len(n)), true
	}
	if info {
		ex.method, ex.host, ex.path = string(head[h.Method.Start:h.Method.End]), string(head[h.Host.Start:h.Host.End]), string(head[h.Path.Start:h.Path.End])
		ex.remote = c.remote
	}
	c.tbl, c.pe, c.pick = tbl, rt.pool, nil
	if rt.pool.stickyPick {
		c.pick = c.stickyKey(rt.pool)
	}
	c.tried, c.try, c.maxTries = c.triedArr[:0], 0, 1+rt.pool.cfg.Retries
	c.isHead = bstr(head, h.Method) == http.MethodHead
	c.started, c.respDone, c.wrote = false, false, false
	if c.out == nil {
		c.out, c.wb = c.l.getSmall(), c.l.getSmall()
	}
	if !h.Upgrade && heldOpen(rt, bstr(head, h.Method), bstr(head, h.Path), bstr(head, h.Query()), "") {
		ex.hold()
	}
	if rt.cache != nil && !ex.held && !h.Upgrade && c.cacheLookup(true) {
		return
	}
	c.forward()
}

// forward sends the routed request to a target: its head and body for
// the target in c.out, then the first attempt.
func (c *evClient) forward() {
	head := c.buf[c.r:]
	h := &c.h
	c.writeOutHead(&c.ex)
	if h.ContentLength > 0 {
		c.out = append(c.out, head[h.Size:h.Size+int(h.ContentLength)]...)
	}
	c.tbl.budget.deposit()
	c.attempt()
}

// stickyKey returns the key a sticky pool picks by: the request's path
// (SockJS sessions), the value of the pool's cookie (the pin), and
// whether the client speaks TLS (a new pin is Secure). Its strings view the
// connection's buffer, which stays put while the request is in flight;
// nothing is allocated.
func (c *evClient) stickyKey(pe *poolEntry) *pool.Key {
	head := c.buf[c.r:]
	h := &c.h
	c.key = pool.Key{Path: bstr(head, h.Path), TLS: c.secure()}
	if name := pe.p.CookieName(); name != "" {
		for _, sp := range h.Cookies[:h.NCookies] {
			if v, ok := pool.CookieValue(bstr(head, sp), name); ok {
				c.key.Cookie = v
				break
			}
		}
	}
	return &c.key
}

// writeOutHead builds the request head for the target in c.out.
func (c *evClient) writeOutHead(ex *exchange) {
	head := c.buf[c.r:]
	h := &c.h
	o := c.out[:0]
	o = append(o, head[h.Method.Start:h.Target.End]...)
	o = append(o, " HTTP/1.1\r\n"...)
	if h.Upgrade {
		o = append(o, "Connection: Upgrade\r\nUpgrade: websocket\r\n"...)
	}
	for _, f := range h.Fields[:h.NFields] {
		o = append(o, head[f.Start:f.End]...)
	}
	host := head[h.Host.Start:h.Host.End]
	proto := "http"
	if c.secure() {
		proto = "https"
	}
	if c.fwd == "" || string(host) != string(c.fwdHost) {
		c.fwdHost = append(c.fwdHost[:0], host...)
		c.fwd = forwardedElement(c.client, string(host), proto)
	}
	// The fast path serves untrusted clients only (eligible), so this is
	// setForwarded's untrusted case.
	fv := untrustedForwarded(c.ip, proto, bstr(head, h.Host), c.fwd)
	for i, k := range clientHeaders {
		o = append(o, k...)
		o = append(o, ": "...)
		o = append(o, fv[i]...)
		o = append(o, "\r\n"...)
	}
	o = append(o, "X-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\n\r\n"...)
	c.out = o
}

// attempt picks a target and starts a try on a pooled or new connection
// to it; the connection reports back through tryFailed or the relay.
func (c *evClient) attempt() {
	ex := &c.ex
	h := &c.h
	b := c.l.s.b
	for {
		choice, err := c.pe.p.Pick(c.pick, c.tried)
		if err != nil {
			head := c.buf[c.r:]
			if nt := b.reroute(ex, bstr(head, h.Host), bstr(head, h.Path), c.tbl); nt != nil {
				// A reload retired the pool after routing: once, route
				// again on the current table, like the net/http path.
				c.tbl, c.pe = nt, ex.route.pool
				c.tried, c.maxTries = c.triedArr[:0], 1+c.pe.cfg.Retries
				c.pick = nil
				if c.pe.stickyPick {
					c.pick = c.stickyKey(c.pe) // the new pool's cookie may differ
				}
				continue
			}
			if ex.err == nil || c.try == 0 {
				ex.err = err
			}
			c.fail(ex.err)
			return
		}
		t := choice.Target
		c.cookie = choice.Cookie
		ex.target = t.Addr()
		u, err := c.l.upstream(c.pe, ex.target)
		t.Begin()
		c.target = t
		if err != nil {
			c.tryFailed(err)
			return
		}
		c.up = u
		u.start(c, t, c.pe.cfg)
		return
	}
}

// tryFailed ends the current try with err (its connection is closed):
// another target gets the request when that is safe, else the client
// gets an error, or its connection is cut when the answer began.
func (c *evClient) tryFailed(err error) {
	t := c.target
	c.up = nil
	ex := &c.ex
	if c.started {
		t.End(pool.Outcome{Status: c.status, TTFB: ex.ttfb})
		if !c.wrote {
			// The answer broke before any of it reached the client (a
			// bad body in the same read as its head): a 502 is still
			// possible, as on the net/http path.
			c.wb, c.wo, c.started = c.wb[:0], 0, false
			ex.bytesOut = 0
			c.fail(err)
			return
		}
		c.abort(err)
		return
	}
	t.End(pool.Outcome{ConnErr: true})
	ex.err = err
	// The body is buffered whole in c.out: a try that never reached the
	// target can send it again.
	if !mayRetry(err, bstr(c.buf[c.r:], c.h.Method), c.h.ContentLength > 0, true, c.try, c.maxTries, c.tbl.budget) {
		c.fail(err)
		return
	}
	c.tried = append(c.tried, t)
	c.try++
	ex.retries++
	c.pe.m.retries.Inc()
	c.attempt()
}

// fail answers the client with the status of err.
func (c *evClient) fail(err error) {
	ex := &c.ex
	ex.err = err
	a := answerFor(err, ex.closeAfter)
	ex.status, ex.closeAfter = a.status, a.close
	c.dropEncoder()
	c.endCache()
	o := c.wb[:0]
	o = append(o, "HTTP/1.1 "...)
	o = strconv.AppendInt(o, int64(a.status), 10)
	o = append(o, ' ')
	o = append(o, http.StatusText(a.status)...)
	o = append(o, "\r\nContent-Type: "+errorContentType+"\r\nX-Content-Type-Options: "+errorNoSniff+"\r\nX-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\nContent-Length: "...)
	o = strconv.AppendInt(o, int64(len(a.msg)+1), 10)
	if a.close {
		o = append(o, "\r\nConnection: close"...)
	}
	o = append(o, "\r\n\r\n"...)
	if !c.isHead {
		o = append(o, a.msg...)
		o = append(o, '\n')
	}
	c.wb, c.wo = o, 0
	ex.bytesOut = int64(len(a.msg) + 1)
	c.started, c.respDone = true, true
	c.flush()
}

// respHead queues the client's response head for the target's head p,
// parsed in rh, and sets up the body relay.
func (c *evClient) respHead(p []byte, rh *h1.Response) {
	ex := &c.ex
	// The answer filter: the one place where the fast path changes an
	// answer's head and body (compression; compress.go).
	c.skip.clear()
	enc, vary, etag := c.compressHead(p, rh, &c.skip)
	o := c.headStart(p, rh, &c.skip)
	o = c.cacheHead(p, rh, o)
	c.mode = rmClose
	switch {
	case c.isHead || rh.Status == 204 || rh.Status == 304 || rh.Status < 200:
		c.mode = rmNone
	case rh.Chunked:
		c.mode = rmChunked
		c.ins.StartChunked()
	case rh.ContentLength >= 0:
		c.mode = rmFixed
		c.remain = rh.ContentLength
	}
	if vary {
		o = append(o, "Vary: Accept-Encoding\r\n"...)
	}
	if enc != EncIdentity && c.mode != rmNone {
		o = append(o, "Content-Encoding: "...)
		o = append(o, enc.String()...)
		o = append(o, "\r\n"...)
		if prefix, keep := weakETag(bstrOf(etag)); keep {
			o = append(o, "ETag: "...)
			o = append(o, prefix...)
			o = append(o, etag...)
			o = append(o, "\r\n"...)
		}
		c.startCompress(enc)
	}
	if c.mode == rmChunked || c.mode == rmClose || c.z != nil {
		o = append(o, "Transfer-Encoding: chunked\r\n"...)
	}
	// A refused upgrade's connection is not reused, as on the net/http path.
	c.reuse = !rh.Close && c.mode != rmClose && !c.h.Upgrade
	if ex.closeAfter {
		o = append(o, "Connection: close\r\n"...)
	}
	o = append(o, "\r\n"...)
	c.wb, c.wo = o, 0
}

// interim sends the client the 1xx head p (parsed in rh; not 101) of
// the target's answer before its final head, as HAProxy does (RFC 9110
// 15.2: a proxy forwards 1xx answers to HTTP/1.1 clients, and the fast
// path serves only those): the status line and the fields ParseResponse
// kept. The answer is not started, but bytes reached the client: a try
// that fails after it ends the connection (tryFailed) instead of
// answering 502.
func (c *evClient) interim(p []byte, rh *h1.Response) {
	o := c.wb
	o = append(o, "HTTP/1.1 "...)
	o = append(o, p[9:bytes.IndexByte(p, '\n')+1]...)
	for _, f := range rh.Fields[:rh.NFields] {
		o = append(o, p[f.Start:f.End]...)
	}
	o = append(o, "\r\n"...)
	c.wb = o
	c.flush()
}

// headStart begins the client's copy of the target's head p (parsed in
// rh) in c.wb: status line, kept fields, X-Request-Id and the sticky
// pin's Set-Cookie; the caller adds its framing fields and the final
// CRLF. The answer counts as started from here, with its status and time
// to first byte recorded. The fields in skip (nil: none) are left out.
func (c *evClient) headStart(p []byte, rh *h1.Response, skip *fieldSet) []byte {
	ex := &c.ex
	o := c.wb[:0]
	o = append(o, "HTTP/1.1 "...)
	o = append(o, p[9:bytes.IndexByte(p, '\n')+1]...)
	for i, f := range rh.Fields[:rh.NFields] {
		if !skip.has(i) {
			o = append(o, p[f.Start:f.End]...)
		}
	}
	o = append(o, "X-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\n"...)
	if c.cookie != nil {
		if v := c.cookie.String(); v != "" {
			o = append(o, "Set-Cookie: "...)
			o = append(o, v...)
			o = append(o, "\r\n"...)
		}
	}
	c.started, c.status = true, rh.Status
	ex.status = rh.Status
	if !ex.held && rh.ContentType.End > rh.ContentType.Start {
		head := c.buf[c.r:]
		if heldOpen(ex.route, bstr(head, c.h.Method), bstr(head, c.h.Path), bstr(head, c.h.Query()), bstr(p, rh.ContentType)) {
			ex.hold()
		}
	}
	ex.headers = time.Now()
	ex.ttfb = ex.headers.Sub(ex.wrote)
	c.pe.m.ttfb.Observe(ex.ttfb.Seconds())
	return o
}

// relay queues the body bytes in avail, as far as the target's framing
// goes; it reports whether the body is complete. paused says the target
// had sent no more than avail for now: a compressed body is flushed.
func (c *evClient) relay(avail []byte, paused bool) (bool, error) {
	var body []byte
	done := false
	switch c.mode {
	case rmNone:
		done = true
		if len(avail) > 0 {
			c.reuse = false
		}
	case rmFixed:
		n := min(int64(len(avail)), c.remain)
		body, c.remain = avail[:n], c.remain-n
		if int64(len(avail)) > n {
			c.reuse = false
		}
		done = c.remain == 0
		c.ex.bodyIn += n
		c.captureBody(body, done)
	case rmChunked:
		k, err := c.ins.Feed(avail)
		switch {
		case errors.Is(err, h1.ErrMsgEnd):
			k++
			done = true
			if k < len(avail) {
				c.reuse = false
			}
		case err != nil:
			return false, h1.ErrBadResponse
		}
		body = avail[:k]
	case rmClose:
		if c.z != nil {
			c.compressBody(avail, paused, false)
			return false, nil
		}
		if len(avail) > 0 {
			c.wb = strconv.AppendInt(c.wb, int64(len(avail)), 16)
			c.wb = append(c.wb, "\r\n"...)
			c.wb = append(c.wb, avail...)
			c.wb = append(c.wb, "\r\n"...)
			c.ex.bytesOut += int64(len(avail))
		}
		return false, nil
	}
	if c.z != nil {
		c.compressBody(body, paused, done)
		return done, nil
	}
	c.ex.bytesOut += int64(len(body))
	c.wb = append(c.wb, body...)
	return done, nil
}

// endClosedBody ends a body that the target delimited by closing its
// connection (rmClose): the last chunk, after the encoder's end when
// compressing.
func (c *evClient) endClosedBody() {
	if c.z != nil {
		c.compressBody(nil, true, true)
		return
	}
	c.wb = append(c.wb, "0\r\n\r\n"...)
}

// flush writes the queued bytes. When the client cannot take more, the
// target's reads pause until it can; when everything is written and the
// answer is complete, the exchange ends.
func (c *evClient) flush() {
	for c.wo < len(c.wb) || len(c.tail) > 0 || c.tls != nil && c.tls.unsent() {
		p := c.tail
		if c.wo < len(c.wb) {
			p = c.wb[c.wo:]
		}
		n, err := c.writeConn(p)
		if n > 0 {
			if c.wo < len(c.wb) {
				c.wo += n
			} else {
				c.tail = c.tail[n:]
			}
			c.wrote = true
			continue
		}
		if err == nil {
			continue // p was empty: the waiting TLS records went out
		}
		if err == netpoll.ErrAgain {
			c.setEvents(c.events | netpoll.Out)
			if c.up != nil {
				c.up.pause()
			}
			c.dl = c.l.now + c.l.s.lim.ClientIdle // a client that stops reading
			return
		}
		c.abort(errClientWrite)
		return
	}
	c.wb, c.wo, c.dl = c.wb[:0], 0, 0
	if c.events&netpoll.Out != 0 {
		c.setEvents(c.events &^ netpoll.Out)
	}
	if c.respDone {
		c.complete()
		return
	}
	if c.up != nil {
		c.up.resume()
	}
}

// complete ends the exchange whose answer was written, and serves the
// next request on the connection.
func (c *evClient) complete() {
	if c.h2 != nil {
		c.h2.complete()
		return
	}
	ex := &c.ex
	c.readRTT()
	c.l.s.b.record(ex)
	c.r += c.h.Size + int(c.h.ContentLength)
	c.state, c.respDone, c.started, c.served = csIdle, false, false, true
	c.dropEncoder()
	c.endCache()
	c.l.putSmall(c.out)
	c.l.putSmall(c.wb)
	c.out, c.wb = nil, nil
	if ex.closeAfter || c.l.draining {
		c.close()
		return
	}
	if c.events&netpoll.In == 0 {
		c.setEvents(c.events | netpoll.In)
	}
	c.serveNext()
	if c.state == csIdle && c.tls != nil && c.tls.full {
		// Reading stopped on a full buffer: what TLS still holds is
		// announced by no readiness report.
		c.readable()
	}
}

// abort ends the connection with a request in flight: its try (if any)
// is cut and the exchange recorded with err.
func (c *evClient) abort(err error) {
	if c.state == csDone {
		return
	}
	if c.tun != nil {
		c.tun.close()
		return
	}
	if u := c.up; u != nil {
		c.up = nil
		u.c = nil
		u.close()
		if c.started {
			c.target.End(pool.Outcome{Status: c.status, TTFB: c.ex.ttfb})
		} else {
			c.target.End(pool.Outcome{})
		}
	}
	if c.state == csBusy {
		ex := &c.ex
		if ex.err == nil || errors.Is(err, errClientGone) {
			ex.err = err
		}
		if !c.started {
			ex.status = statusClientGone
		}
		c.readRTT()
		c.l.s.b.record(ex)
	}
	c.close()
}

// expire acts on a passed deadline: an idle or slow client is closed, one
// that stopped reading its answer is cut.
func (c *evClient) expire(now time.Duration) {
	if c.tls != nil {
		c.tls.sweep()
	}
	if c.state == csTunnel {
		c.tun.expire(now)
		return
	}
	if c.dl == 0 || now < c.dl {
		return
	}
	if c.state == csBusy && c.waiting {
		// Another request's fetch of the key took too long: go to the
		// target without it.
		c.cacheWaitEnd()
		return
	}
	if c.state == csBusy {
		c.abort(errClientWrite)
		return
	}
	c.close()
}

// close closes the connection (no request in flight).
func (c *evClient) close() {
	if c.state == csDone {
		return
	}
	if c.h2 != nil {
		c.h2.clientClosed()
		return
	}
	c.state = csDone
	c.l.forget(c.fd)
	delete(c.l.clients, c)
	c.finalClose()
}

func (c *evClient) finalClose() {
	c.state = csDone
	c.l.nClients.Add(-1)
	c.freeBufs()
	if c.tls != nil {
		c.tls.closeNotify()
		c.tls = nil
	}
	netpoll.Close(c.fd)
	c.l.s.conns.Add(-1)
	if c.release != nil {
		c.release()
	}
	c.l.maybeResumeAccept()
}

// handoff gives the connection, from the request at buf[r:] on, to the
// listener's http.Server behind the smuggling guard.
func (c *evClient) handoff() {
	if c.h2 != nil {
		c.h2.handoff()
		return
	}
	pre := append([]byte(nil), c.buf[c.r:c.w]...)
	c.freeBufs()
	c.state = csDone
	c.l.del(c.fd)
	delete(c.l.clients, c)
	c.l.nClients.Add(-1)
	c.l.s.conns.Add(-1)
	nc, err := fdConn(c.fd, c.release)
	if err != nil {
		c.l.logger().Warn("fast path hand-over failed", "error", err)
		return
	}
	if c.tls != nil {
		c.l.s.give(c.tls.handBack(nc, pre, c.l.s.lim.MaxHeaderBytes))
		return
	}
	c.l.s.give(newGuardConn(&prefixConn{Conn: nc, pre: pre}, c.l.s.lim.MaxHeaderBytes))
}

// readConn reads what the client sent: the socket's bytes, or on TLS the
// plaintext of its records (the same results: n > 0, or ErrAgain, or the
// end of the connection).
func (c *evClient) readConn(p []byte) (int, error) {
	if c.tls != nil {
		return c.tls.read(p)
	}
	return netpoll.Read(c.fd, p)
}

// writeConn writes to the client: on TLS, encrypted (an empty p sends
// the records still waiting).
func (c *evClient) writeConn(p []byte) (int, error) {
	if c.h2 != nil {
		return c.h2.write(p, c.respDone && (c.wo >= len(c.wb) || len(c.tail) == 0))
	}
	if c.tls != nil {
		// The end of an answer after which the connection closes
		// (complete's test) takes the close_notify along.
		last := c.respDone && (c.ex.closeAfter || c.l.draining) && (c.wo >= len(c.wb) || len(c.tail) == 0)
		return c.tls.write(p, last)
	}
	return netpoll.Write(c.fd, p)
}

// secure reports whether the client speaks TLS.
func (c *evClient) secure() bool { return c.tls != nil || c.h2 != nil }

// freeBufs gives the connection's buffers back to the loop.
func (c *evClient) freeBufs() {
	c.dropEncoder()
	c.endCache()
	c.l.putBuf(c.buf)
	c.l.putSmall(c.out)
	c.l.putSmall(c.wb)
	c.l.putReq(c.evReq)
	c.buf, c.out, c.wb, c.evReq = nil, nil, nil, nil
}
