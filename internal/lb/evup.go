package lb

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
	"github.com/shoal-dev/shoal/internal/pool"
)

// maxResponseHead is the largest response head relayed, as on the
// net/http path (Transport.MaxResponseHeaderBytes).
const maxResponseHead = 1 << 20

// upstreams holds the fast path's settings for the target connections of
// one pool; the connections themselves belong to the loops, each of which
// keeps its own idle ones per (upstreams, address).
type upstreams struct {
	maxIdle    int
	idleFor    time.Duration
	connectFor time.Duration
	closed     atomic.Bool
	generation atomic.Uint64 // bumped by closeIdle: older idle connections close
	// tlsLegacy: a target of the TLS pool did not speak TLS 1.3; its
	// requests go through net/http (evtargettls.go).
	tlsLegacy atomic.Bool
	// tlsServed counts the target connections our record layer served.
	tlsServed   atomic.Int64
	resolveHost func(ctx context.Context, host string) ([]netip.Addr, error)
}

func newUpstreams(pc PoolConfig, lim Limits) *upstreams {
	return &upstreams{
		maxIdle: lim.MaxIdlePerHost, idleFor: lim.UpstreamIdle, connectFor: pc.ConnectTimeout,
		resolveHost: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}
}

// closeIdle retires every idle connection (each loop closes its own when
// it meets them); with final, connections are no longer pooled at all.
func (u *upstreams) closeIdle(final bool) {
	if final {
		u.closed.Store(true)
	}
	u.generation.Add(1)
}

type upKey struct {
	u    *upstreams
	addr string
}

// Target connection states.
const (
	usFree      = iota // connected, not in use and not pooled (just taken)
	usResolving        // waiting for a host name's address
	usDialing          // connect in progress
	usHandshake        // TCP and TLS handshake in a goroutine (evtargettls.go)
	usSending          // writing the request
	usWaiting          // reading the response head
	usBody             // relaying the response body
	usIdle             // pooled
	usTunnel           // one side of a WebSocket tunnel
	usClosed
)

// evUp is a connection to a target, owned by one loop.
type evUp struct {
	l      *evLoop
	fd     int
	gen    uint32
	events netpoll.Events
	key    upKey
	state  uint8
	c      *evClient // the client whose request it carries
	tun    *evTunnel
	t      *pool.Target
	buf    []byte // response bytes; unread are buf[r:w]
	r, w   int
	wo     int // bytes of c.out written
	dl     time.Duration
	tryFor time.Duration
	idleAt time.Duration
	pgen   uint64
	paused bool // reads wait for the client to take what was read
	// short: the last read did not fill the buffer, so the target sent
	// nothing more for now (a compressed body is flushed then).
	short bool
	// detached: the socket failed while paused and left epoll; resume
	// reads what is left directly.
	detached bool
	noReuse  bool
	// tls is the layer of a connection to an HTTPS target
	// (evtargettls.go); nil on plain ones. stopHS cancels its handshake
	// in flight; queued: u is in its loop's dialQueue.
	tls    *evTLS
	stopHS context.CancelFunc
	queued bool

	drainCtx  context.Context
	stopDrain func() bool
}

// upstream returns an idle connection to addr for pe, or a new one being
// dialled. A dial that fails at once is a *dialError.
func (l *evLoop) upstream(pe *poolEntry, addr string) (*evUp, error) {
	key := upKey{pe.up, addr}
	list := l.idle[key]
	for len(list) > 0 {
		u := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		u.state = usFree
		if l.now-u.idleAt > key.u.idleFor || u.pgen != key.u.generation.Load() {
			u.close()
			continue
		}
		l.idle[key] = list
		return u, nil
	}
	l.idle[key] = list
	u := &evUp{l: l, fd: -1, key: key}
	l.ups[u] = struct{}{}
	u.dl = l.now + key.u.connectFor
	if pe.tls != nil {
		u.dialTLS(pe)
		return u, nil
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		if err := u.connect(ap); err != nil {
			u.close()
			return nil, &dialError{err}
		}
		return u, nil
	}
	host, port, err := net.SplitHostPort(addr)
	var pn uint64
	if err == nil {
		pn, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		u.close()
		return nil, &dialError{err}
	}
	u.state = usResolving
	ctx, cancel := context.WithTimeout(context.Background(), key.u.connectFor)
	go func() {
		defer cancel()
		ips, err := key.u.resolveHost(ctx, host)
		l.post(func() {
			if u.state != usResolving {
				return
			}
			if err == nil && len(ips) == 0 {
				err = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
			}
			if err == nil {
				err = u.connect(netip.AddrPortFrom(ips[0].Unmap(), uint16(pn)))
			}
			if err != nil {
				u.fail(&dialError{err})
			} else if u.state == usFree && u.c != nil {
				u.state = usSending
				u.send()
			}
		})
	}()
	return u, nil
}

// upKeepAlive is the silence after which the kernel probes an idle
// target connection.
const upKeepAlive = 30 * time.Second

// connect opens a non-blocking socket to ap and registers it.
func (u *evUp) connect(ap netip.AddrPort) error {
	fd, pending, err := netpoll.Dial(ap, upKeepAlive)
	if err != nil {
		return err
	}
	u.fd = fd
	u.state = usFree
	events := netpoll.In
	if pending {
		u.state = usDialing
		events |= netpoll.Out
	}
	gen, err := u.l.add(fd, events, u)
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	u.gen, u.events = gen, events
	return nil
}

func (u *evUp) setEvents(ev netpoll.Events) {
	if ev != u.events && !u.detached {
		u.events = ev
		u.l.mod(u.fd, u.gen, ev)
	}
}

// start carries c's request to t on u (sent now, or once connected).
func (u *evUp) start(c *evClient, t *pool.Target, pc PoolConfig) {
	u.c, u.t, u.wo, u.r, u.w, u.noReuse = c, t, 0, 0, 0, false
	u.tryFor = pc.TryTimeout
	tctx := t.Context()
	u.watch(tctx)
	if tctx.Err() != nil {
		u.fail(pool.ErrDrainDeadline)
		return
	}
	if u.state == usFree {
		u.state = usSending
		u.dl = u.tryDeadline()
		u.send()
	}
}

// tryDeadline is the loop time at which the try ends; 0 (none) when the
// pool's try timeout is off.
func (u *evUp) tryDeadline() time.Duration {
	if u.tryFor < 0 {
		return 0
	}
	return u.l.now + u.tryFor
}

// watch makes the drain deadline of ctx (a target's context) end the
// connection's try, or the connection when idle.
func (u *evUp) watch(ctx context.Context) {
	if u.drainCtx == ctx {
		return
	}
	if u.stopDrain != nil {
		u.stopDrain()
	}
	l := u.l
	u.drainCtx = ctx
	u.stopDrain = context.AfterFunc(ctx, func() {
		l.post(func() {
			switch {
			case u.state == usClosed || u.drainCtx != ctx:
			case u.tun != nil:
				u.tun.goAwayNow()
			case u.c != nil:
				u.fail(pool.ErrDrainDeadline)
			default:
				u.close()
			}
		})
	})
}

func (u *evUp) event(ev netpoll.Events) {
	switch u.state {
	case usDialing:
		if err := netpoll.ConnectError(u.fd); err != nil {
			u.fail(&dialError{&net.OpError{Op: "dial", Net: "tcp", Err: err}})
			return
		}
		if ev&(netpoll.Out|netpoll.Err|netpoll.Hup) == 0 {
			return
		}
		u.state = usFree
		if u.c == nil {
			return
		}
		u.state = usSending
		u.dl = u.tryDeadline()
		u.send()
	case usSending:
		if ev&(netpoll.Out|netpoll.Err|netpoll.Hup) != 0 {
			u.send()
		}
		if u.state == usSending && ev&netpoll.In != 0 {
			// The target answers before taking the whole request.
			u.noReuse = true
			u.state = usWaiting
			u.setEvents(netpoll.In)
			u.readable()
		}
	case usWaiting, usBody:
		if u.paused {
			// Only an error or hang-up is reported while paused: leave
			// the poller (it would report it again and again) and read what is
			// left once the client caught up.
			u.l.del(u.fd)
			u.detached = true
			return
		}
		u.readable()
	case usTunnel:
		u.tun.targetEvent(ev)
	case usIdle, usFree:
		if u.tls != nil && ev&(netpoll.Err|netpoll.Hup) == 0 {
			u.idleRead()
			return
		}
		u.close() // the target closed it, or sent bytes nobody asked for
	}
}

// send writes the request.
func (u *evUp) send() {
	c := u.c
	out := c.out
	if c.ex.wrote.IsZero() || u.wo == 0 {
		c.ex.wrote = time.Now()
	}
	for u.wo < len(out) || u.unsent() {
		n, err := u.writeConn(out[u.wo:])
		if n > 0 {
			u.wo += n
			continue
		}
		if err == nil {
			continue // the waiting TLS records went
		}
		if err == netpoll.ErrAgain {
			u.setEvents(netpoll.In | netpoll.Out)
			return
		}
		u.fail(os.NewSyscallError("write", err))
		return
	}
	u.state = usWaiting
	u.setEvents(netpoll.In)
}

// readable reads response bytes and moves them on to the client, and
// goes on while TLS holds more that no readiness report will announce.
func (u *evUp) readable() {
	for {
		u.readOnce()
		if !u.more() || u.c == nil || u.paused || u.state != usWaiting && u.state != usBody {
			return
		}
	}
}

// readOnce reads once what the target sent and moves it on.
func (u *evUp) readOnce() {
	if u.buf == nil {
		// Taken only when bytes arrive: a request waiting for its answer
		// (a long poll) holds no read buffer.
		u.buf = u.l.getBuf()
	}
	if u.w == len(u.buf) {
		// Only a head that is not complete yet fills the buffer.
		if len(u.buf) >= maxResponseHead {
			u.fail(h1.ErrBadResponse)
			return
		}
		u.buf = append(u.buf, make([]byte, len(u.buf))...)[:2*len(u.buf)]
	}
	n, err := u.readConn(u.buf[u.w:])
	if n > 0 {
		u.w += n
		u.short = u.w < len(u.buf)
		if u.state == usWaiting {
			u.head()
		} else {
			u.body()
		}
		return
	}
	if err == netpoll.ErrAgain {
		return
	}
	if err == nil && u.state == usBody && u.c.mode == rmClose {
		// The end of a body delimited by the target closing.
		c := u.c
		c.endClosedBody()
		u.finish(false)
		c.flush()
		return
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	} else {
		err = os.NewSyscallError("read", err)
	}
	u.fail(err)
}

// head parses the response head once whole. A 1xx head (100 Continue,
// 103 Early Hints) goes to the client before the final one (interim);
// a 101 starts a WebSocket tunnel. Relaying a 1xx the client does not
// take at once pauses the connection; resume parses what follows it.
func (u *evUp) head() {
	c := u.c
	for {
		hn := h1.HeadEnd(u.buf[u.r:u.w], 0)
		if hn < 0 {
			if u.r > 0 {
				u.w = copy(u.buf, u.buf[u.r:u.w])
				u.r = 0
			}
			return
		}
		rh := &u.l.rh
		if err := h1.ParseResponse(u.buf[u.r:u.r+hn], rh, fieldKinds); err != nil {
			u.fail(err)
			return
		}
		if rh.Status >= 200 {
			c.respHead(u.buf[u.r:u.r+hn], rh)
			u.r += hn
			break
		}
		if rh.Status == http.StatusSwitchingProtocols {
			if !c.h.Upgrade || !rh.UpgradeWS {
				u.fail(h1.ErrBadResponse)
				return
			}
			c.startTunnel(u, u.buf[u.r:u.r+hn], rh)
			return
		}
		p := u.buf[u.r : u.r+hn]
		u.r += hn
		if c.h2 != nil {
			continue // HTTP/2 streams write one head: the 1xx is dropped
		}
		c.interim(p, rh)
		if u.c == nil || u.paused {
			return
		}
	}
	u.state = usBody
	u.dl = 0 // the body streams on past the try timeout
	u.body()
}

// body relays buf[r:w] and, when the body is complete, ends the try.
func (u *evUp) body() {
	c := u.c
	avail := u.buf[u.r:u.w]
	u.r, u.w = 0, 0
	done, err := c.relay(avail, u.short)
	// relay copied what it took: the buffer goes back until more comes
	// (a stream between events holds none).
	u.l.putBuf(u.buf)
	u.buf = nil
	if err != nil {
		u.fail(err)
		return
	}
	if done {
		u.finish(c.reuse)
	}
	c.flush()
}

// finish ends the try after a complete answer: the connection goes back
// to the pool when reuse allows, the target learns the outcome.
func (u *evUp) finish(reuse bool) {
	c := u.c
	c.up = nil
	c.respDone = true
	u.c = nil
	u.t.End(pool.Outcome{Status: c.status, TTFB: c.ex.ttfb})
	u.endTicketFeed()
	if !reuse {
		u.close()
		return
	}
	u.pool()
}

// pool puts the connection, free now, in the loop's idle pool, or gives
// it to a request waiting for a handshake to the same target, or closes
// it when it cannot be reused or the pool is full.
func (u *evUp) pool() {
	if u.noReuse || u.detached || u.tlsEnded() || u.key.u.closed.Load() || len(u.l.idle[u.key]) >= u.key.u.maxIdle {
		u.close()
		return
	}
	if u.takeWaiting() {
		return
	}
	u.state, u.idleAt, u.dl, u.paused = usIdle, u.l.now, 0, false
	u.l.putBuf(u.buf) // idle connections keep no buffer
	u.buf = nil
	u.pgen = u.key.u.generation.Load()
	u.setEvents(netpoll.In)
	u.l.idle[u.key] = append(u.l.idle[u.key], u)
}

// pause stops reading until the client took what was read.
func (u *evUp) pause() {
	if !u.paused && (u.state == usBody || u.state == usWaiting) {
		u.paused = true
		u.setEvents(0)
	}
}

// resume reads again after a pause.
func (u *evUp) resume() {
	if !u.paused {
		return
	}
	u.paused = false
	if !u.detached {
		u.setEvents(netpoll.In)
	}
	if u.state == usWaiting && u.w > u.r {
		u.head() // what came after a 1xx the client took late
	}
	if !u.detached {
		if u.c != nil && !u.paused && u.more() {
			u.readable()
		}
		return
	}
	// Bounded: each read either moves bytes on, pauses again or ends.
	for u.c != nil && !u.paused && u.state == usBody {
		u.readable()
	}
}

// fail ends the try with err: the connection closes and the client
// decides what happens next.
func (u *evUp) fail(err error) {
	c := u.c
	if u.drainCtx != nil && u.drainCtx.Err() != nil {
		err = pool.ErrDrainDeadline
	}
	u.c = nil
	u.close()
	if c != nil {
		c.tryFailed(err)
	}
}

// expire acts on a passed connect or try deadline, and closes idle
// connections past their time or retired.
func (u *evUp) expire(now time.Duration) {
	if u.tls != nil {
		u.tls.sweep()
	}
	switch u.state {
	case usIdle:
		if now-u.idleAt > u.key.u.idleFor || u.pgen != u.key.u.generation.Load() {
			u.close()
		}
	case usResolving, usDialing, usHandshake:
		if u.dl != 0 && now >= u.dl {
			u.fail(u.dialExpired())
		}
	case usSending, usWaiting:
		if u.dl != 0 && now >= u.dl {
			u.fail(os.ErrDeadlineExceeded)
		}
	}
}

// close closes the connection and forgets it.
func (u *evUp) close() {
	if u.state == usClosed {
		return
	}
	if u.state == usIdle {
		list := u.l.idle[u.key]
		for i, o := range list {
			if o == u {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(u.l.idle, u.key)
		} else {
			u.l.idle[u.key] = list
		}
	}
	u.state = usClosed
	if u.stopDrain != nil {
		u.stopDrain()
		u.stopDrain = nil
	}
	u.closeTLS()
	if u.fd >= 0 {
		u.l.forget(u.fd)
		netpoll.Close(u.fd)
		u.fd = -1
	}
	delete(u.l.ups, u)
	u.l.putBuf(u.buf)
	u.buf = nil
}
