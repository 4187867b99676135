package lb

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shoal-dev/shoal/internal/pool"
)

// fastConn is one client connection on the fast path.
type fastConn struct {
	s      *fastServer
	c      net.Conn
	raw    net.Conn    // c as accepted; the server closes it on shutdown
	idle   atomic.Bool // waiting for a request (see fastServer.setIdle)
	client netip.Addr
	buf    []byte // client bytes; unread are buf[r:w]
	r, w   int
	out    []byte // head being written
	h      reqHead
	rh     respHead
	ex     exchange
	isHead bool // the current request is HEAD (set before its buffer is consumed)

	// Per-connection caches, so a request allocates nothing: the client
	// address as text, the Forwarded element for the last Host seen, and
	// the generated request id.
	ip      string
	fwdHost []byte
	fwd     string
	idBuf   [idLen]byte
}

func (fc *fastConn) serve() {
	defer fc.s.done(fc)
	handedOff := false
	defer func() {
		if !handedOff {
			fc.c.Close()
		}
	}()
	fc.client = clientAddr(fc.c)
	fc.ip = fc.client.String()
	fc.buf = make([]byte, 16<<10)
	fc.out = make([]byte, 0, 4<<10)
	lim := fc.s.lim
	for {
		if !fc.s.setIdle(fc, fc.r == fc.w) {
			return
		}
		n, ok := fc.readHead(lim)
		if !ok {
			return
		}
		if !fc.s.setIdle(fc, false) {
			return
		}
		if n < 0 || !parseRequest(fc.buf[fc.r:fc.r+n], &fc.h) || !fc.eligible(n) {
			// Outside the fast subset: net/http serves the rest.
			handedOff = true
			fc.s.handoff.give(newGuardConn(&prefixConn{Conn: fc.c, pre: append([]byte(nil), fc.buf[fc.r:fc.w]...)}))
			return
		}
		if !fc.s.b.fastRequest(fc) {
			return
		}
	}
}

// readHead reads until buf[r:] holds a whole head. It returns its length,
// -1 when the head does not fit (hand over), or false when the
// connection is done (EOF, idle or header timeout).
func (fc *fastConn) readHead(lim Limits) (int, bool) {
	if fc.r == fc.w {
		fc.r, fc.w = 0, 0
	} else if n := headEnd(fc.buf[fc.r:fc.w], 0); n > 0 {
		return n, true // pipelined
	}
	if fc.r > 0 && fc.r == fc.w {
		fc.r, fc.w = 0, 0
	}
	if fc.r > 0 {
		fc.w = copy(fc.buf, fc.buf[fc.r:fc.w])
		fc.r = 0
	}
	deadline := lim.ClientIdle
	if fc.w > 0 {
		deadline = lim.HeaderTimeout
	}
	fc.c.SetReadDeadline(time.Now().Add(deadline))
	for {
		if fc.w == len(fc.buf) {
			return -1, true
		}
		k, err := fc.c.Read(fc.buf[fc.w:])
		if k > 0 {
			from := fc.w
			fc.w += k
			if n := headEnd(fc.buf[:fc.w], from); n > 0 {
				return n, true
			}
			if fc.buf[0] == '\r' || fc.buf[0] == '\n' || fc.w > lim.MaxHeaderBytes {
				return -1, true
			}
			if deadline != lim.HeaderTimeout {
				// A head began but is not complete: the rest must come
				// within the header timeout. (A head read whole, the usual
				// case, costs no second deadline.)
				deadline = lim.HeaderTimeout
				fc.c.SetReadDeadline(time.Now().Add(deadline))
			}
			continue
		}
		if err != nil {
			return 0, false
		}
	}
}

// eligible applies the limits and routing checks that keep a parsed
// request on the fast path.
func (fc *fastConn) eligible(n int) bool {
	h := &fc.h
	b := fc.s.b
	tbl := b.tbl.Load()
	lim := tbl.limits
	if n > lim.MaxHeaderBytes || int(h.target.e-h.target.s) > lim.MaxURIBytes ||
		lim.MaxBodyBytes > 0 && h.clen > lim.MaxBodyBytes || b.maint.Load() != nil || trusted(tbl.trusted, fc.client) {
		return false
	}
	if h.nReqID > 1 {
		return false
	}
	return true
}

// bstr views buf[sp] as a string without copying; only for lookups that
// keep nothing.
func bstr(buf []byte, sp span) string {
	if sp.e <= sp.s {
		return ""
	}
	return unsafe.String(&buf[sp.s], int(sp.e-sp.s))
}

// fastRequest proxies the parsed request at fc.buf[fc.r:]. It returns
// whether the connection may serve another request.
func (b *Balancer) fastRequest(fc *fastConn) bool {
	head := fc.buf[fc.r:]
	h := &fc.h
	tbl := b.tbl.Load()
	rt := tbl.routers[fc.s.name].match(bstr(head, h.host), bstr(head, h.path))
	if rt == nil || rt.pool.stickyPick {
		fc.s.handoffNow(fc)
		return false
	}
	// Not counted in b.handlers: Run's final listener close waits for the
	// fast connections' goroutines, this one included.
	fc.s.requests.Add(1)
	ex := &fc.ex
	*ex = exchange{start: time.Now(), listener: fc.s.name, route: rt, closeAfter: h.close}
	if h.nReqID == 1 && validRequestID(bstr(head, h.reqID)) {
		ex.id = string(head[h.reqID.s:h.reqID.e])
	} else if b.wantsInfo() {
		ex.id = b.ids.next()
	} else {
		// Nothing keeps ex.id beyond this request without an access log
		// or an observer: view the connection's buffer.
		n := b.ids.appendNext(fc.idBuf[:0])
		ex.id, ex.idBorrowed = unsafe.String(&fc.idBuf[0], len(n)), true
	}
	if b.wantsInfo() {
		ex.method, ex.host, ex.path = string(head[h.method.s:h.method.e]), string(head[h.host.s:h.host.e]), string(head[h.path.s:h.path.e])
		ex.remote = fc.c.RemoteAddr().String()
	}
	ok := b.fastProxy(fc, ex, tbl)
	b.record(ex)
	return ok && !ex.closeAfter
}

// handoffNow hands the connection, from the current request on, to
// net/http. The caller must return without touching fc.c again.
func (s *fastServer) handoffNow(fc *fastConn) {
	pre := append([]byte(nil), fc.buf[fc.r:fc.w]...)
	c := fc.c
	fc.c = handedConn{c}
	s.handoff.give(newGuardConn(&prefixConn{Conn: c, pre: pre}))
}

// handedConn is what fc.c becomes after a hand-over: closing it is a no-op
// for the fast path, which no longer owns the connection.
type handedConn struct{ net.Conn }

func (handedConn) Close() error { return nil }

// writeOutHead builds the upstream request head in fc.out.
func (fc *fastConn) writeOutHead(ex *exchange) {
	head := fc.buf[fc.r:]
	h := &fc.h
	o := fc.out[:0]
	o = append(o, head[h.method.s:h.target.e]...)
	o = append(o, " HTTP/1.1\r\n"...)
	for _, f := range h.fields[:h.nfields] {
		o = append(o, head[f.s:f.e]...)
	}
	ip := fc.ip
	host := head[h.host.s:h.host.e]
	if fc.fwd == "" || string(host) != string(fc.fwdHost) {
		fc.fwdHost = append(fc.fwdHost[:0], host...)
		fc.fwd = forwardedElement(fc.client, string(host), "http")
	}
	o = append(o, "X-Forwarded-For: "...)
	o = append(o, ip...)
	o = append(o, "\r\nX-Real-Ip: "...)
	o = append(o, ip...)
	o = append(o, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "...)
	o = append(o, host...)
	o = append(o, "\r\nForwarded: "...)
	o = append(o, fc.fwd...)
	o = append(o, "\r\nX-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\n\r\n"...)
	fc.out = o
}

// fastProxy runs the attempts of one request and relays the response. It
// returns whether the client connection is still usable.
func (b *Balancer) fastProxy(fc *fastConn, ex *exchange, tbl *table) bool {
	h := &fc.h
	pe := ex.route.pool
	fc.writeOutHead(ex)
	headLen := h.size
	bodyInBuf := min(int64(fc.w-fc.r-headLen), h.clen)
	bodyUsed := false
	tbl.budget.deposit()
	var triedArr [4]*pool.Target
	tried := triedArr[:0]
	maxTries := 1 + pe.cfg.Retries
	method := bstr(fc.buf[fc.r:], h.method)
	for try := 0; ; try++ {
		choice, err := pe.p.Pick(nil, tried)
		if err != nil {
			head := fc.buf[fc.r:]
			if nt := b.reroute(ex, bstr(head, h.host), bstr(head, h.path), tbl); nt != nil && !ex.route.pool.stickyPick {
				// A reload retired the pool after routing: once, route
				// again on the current table, like the net/http path.
				tbl, pe, tried = nt, ex.route.pool, tried[:0]
				maxTries = 1 + pe.cfg.Retries
				try--
				continue
			}
			if ex.err == nil || try == 0 {
				ex.err = err
			}
			return fc.fail(ex, ex.err)
		}
		t := choice.Target
		ex.target = t.Addr()
		now := ex.start
		if try > 0 {
			now = time.Now() // the earlier attempts took time
		}
		uc, err := pe.up.get(context.Background(), ex.target, now)
		t.Begin()
		if err == nil {
			err = b.fastAttempt(fc, ex, pe, t, uc, bodyInBuf, &bodyUsed)
			if err == nil {
				return !ex.closeAfter
			}
			if errors.Is(err, errRelayed) {
				return false
			}
		}
		var cbe clientBodyError
		if errors.As(err, &cbe) {
			t.End(pool.Outcome{})
			ex.closeAfter = true
			return fc.fail(ex, err)
		}
		t.End(pool.Outcome{ConnErr: true})
		ex.err = err
		var de *dialError
		retry := errors.As(err, &de) && !bodyUsed || h.clen == 0 && idempotent(method)
		if errors.Is(err, pool.ErrDrainDeadline) || !retry || try+1 >= maxTries || !tbl.budget.withdraw() {
			return fc.fail(ex, err)
		}
		tried = append(tried, t)
		ex.retries++
		pe.m.retries.Inc()
	}
}

func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// errRelayed reports a failure after the response began: the client
// connection must be closed and nothing more written.
var errRelayed = errors.New("response cut")

// fail answers the client with the status of err; it returns whether the
// connection may go on.
func (fc *fastConn) fail(ex *exchange, err error) bool {
	ex.err = err
	ex.status = statusOf(err)
	msg := http.StatusText(ex.status)
	o := fc.out[:0]
	o = append(o, "HTTP/1.1 "...)
	o = strconv.AppendInt(o, int64(ex.status), 10)
	o = append(o, ' ')
	o = append(o, msg...)
	o = append(o, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\nContent-Length: "...)
	o = strconv.AppendInt(o, int64(len(msg)+1), 10)
	if ex.closeAfter || ex.status == http.StatusBadRequest {
		ex.closeAfter = true
		o = append(o, "\r\nConnection: close"...)
	}
	o = append(o, "\r\n\r\n"...)
	o = append(o, msg...)
	o = append(o, '\n')
	fc.out = o
	if fc.h.method.e-fc.h.method.s == 4 && string(fc.buf[fc.r+int(fc.h.method.s):fc.r+int(fc.h.method.e)]) == "HEAD" {
		o = o[:len(o)-len(msg)-1]
	}
	if _, err := fc.c.Write(o); err != nil {
		return false
	}
	ex.bytesOut = int64(len(msg) + 1)
	// Skip the request body, if any is left, to stay in sync.
	return !ex.closeAfter && fc.consumeBody()
}

// consumeBody discards what is left of the current request in the
// buffer and reports whether the body was already fully read (otherwise
// the connection is closed rather than reading an unsent body).
func (fc *fastConn) consumeBody() bool {
	end := fc.r + fc.h.size + int(fc.h.clen)
	if end > fc.w {
		return false
	}
	fc.r = end
	return true
}
