package lb

import (
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
	"github.com/shoal-dev/shoal/internal/pool"
)

// evTunnel is a WebSocket connection pair on a loop, after the target
// answered 101: bytes go both ways as they come, with back-pressure (a
// side is not read while the other has not taken what was read from it),
// and frame boundaries are followed both ways so that going away (drain
// deadline, shutdown) can put a 1001 close frame between frames, as the
// net/http path's tunnel does. Everything but goAway runs on the loop.
type evTunnel struct {
	c        *evClient
	u        *evUp
	target   *pool.Target
	pe       *poolEntry
	toClient tunDir
	toTarget tunDir
	idle     time.Duration // Limits.WebSocketIdle; 0 = none
	last     time.Duration // loop time of the last byte either way
	going    bool          // going away: close frames at the next boundaries
	graceDL  time.Duration // going away ends by then
	closed   bool
}

// tunDir is one direction of a tunnel.
type tunDir struct {
	pend []byte // read but not yet written; pend[po:] is left
	po   int
	tr   frameTracker
	sent bool // a close frame was queued this way
}

func (d *tunDir) pending() bool { return d.po < len(d.pend) }

// startTunnel switches c and u to a tunnel after the target's 101 head p
// (parsed in rh), relaying the head and any bytes already read past it.
func (c *evClient) startTunnel(u *evUp, p []byte, rh *h1.Response) {
	b := c.l.s.b
	o := c.headStart(p, rh, nil)
	o = append(o, "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"...)

	t := &evTunnel{c: c, u: u, target: c.target, pe: c.pe, idle: c.tbl.limits.WebSocketIdle, last: c.l.now}
	c.state, c.up, c.dl, c.tun = csTunnel, nil, 0, t
	u.state, u.c, u.dl, u.tun = usTunnel, nil, 0, t
	// The head goes first; the bytes after it in either buffer follow.
	t.toClient.pend, c.wb, c.wo = o, nil, 0
	fromTarget := u.buf[u.r+len(p) : u.w]
	fromClient := c.buf[c.r+c.h.Size : c.w]
	c.r, c.w = 0, 0
	u.r, u.w = 0, 0
	// Both buffers go back to the loop once their bytes went on (write
	// copies what a socket does not take): a tunnel reads into the loop's
	// scratch buffer, so an open WebSocket holds no buffer while quiet.
	defer func() {
		c.l.putBuf(c.buf)
		c.l.putBuf(u.buf)
		c.buf, u.buf = nil, nil
		c.l.putSmall(c.out)
		c.out = nil
	}()
	t.pe.m.ws.Inc()
	ok := b.tunnels.add(t)
	t.flush(&t.toClient, c.fd)
	if !t.closed && len(fromTarget) > 0 {
		t.forward(&t.toClient, c.fd, fromTarget, true)
	}
	if !t.closed && len(fromClient) > 0 {
		t.forward(&t.toTarget, u.fd, fromClient, false)
	}
	if !t.closed && !ok {
		t.goAwayNow() // the balancer is past its shutdown deadline
	}
	t.update()
}

// update sets what each side waits for: reading while the other side
// has nothing pending from it, writing while it has bytes pending.
func (t *evTunnel) update() {
	if t.closed {
		return
	}
	var ce, ue netpoll.Events
	if !t.toTarget.pending() {
		ce |= netpoll.In
	}
	if t.toClient.pending() {
		ce |= netpoll.Out
	}
	if !t.toClient.pending() {
		ue |= netpoll.In
	}
	if t.toTarget.pending() {
		ue |= netpoll.Out
	}
	t.c.setEvents(ce)
	t.u.setEvents(ue)
}

func (t *evTunnel) clientEvent(ev netpoll.Events) {
	t.side(ev, &t.toClient, t.c.fd, &t.toTarget, t.u.fd, t.c.l.scratch, false)
}

func (t *evTunnel) targetEvent(ev netpoll.Events) {
	t.side(ev, &t.toTarget, t.u.fd, &t.toClient, t.c.fd, t.c.l.scratch, true)
}

// side handles readiness on fd: in is the direction that writes to fd,
// out the one that reads from it into buf and writes to dst.
func (t *evTunnel) side(ev netpoll.Events, in *tunDir, fd int, out *tunDir, dst int, buf []byte, toClient bool) {
	if ev&netpoll.Out != 0 && in.pending() {
		t.flush(in, fd)
	}
	if t.closed || ev&(netpoll.In|netpoll.Hup|netpoll.Err) == 0 {
		t.update()
		return
	}
	if out.pending() {
		// Not reading this side: only an error or hang-up is reported.
		t.close()
		return
	}
	n, err := netpoll.Read(fd, buf)
	switch {
	case n > 0:
		t.last = t.c.l.now
		t.forward(out, dst, buf[:n], toClient)
	case err == netpoll.ErrAgain:
	default:
		t.close() // either side closing ends both, as on the net/http path
		return
	}
	t.update()
}

// forward sends p on d to dst, following frames; while going away only
// up to the next frame boundary, then the close frame.
func (t *evTunnel) forward(d *tunDir, dst int, p []byte, toClient bool) {
	if d.sent {
		t.close()
		return
	}
	if !t.going {
		d.tr.advance(p)
		t.write(d, dst, p)
		return
	}
	k, done := d.tr.toBoundary(p)
	t.write(d, dst, p[:k])
	if done && !t.closed {
		t.sendClose(d, dst, toClient)
	}
}

// write sends p after what is pending on d, keeping what the socket
// does not take.
func (t *evTunnel) write(d *tunDir, dst int, p []byte) {
	if d.pending() {
		d.pend = append(d.pend, p...)
		return
	}
	for len(p) > 0 {
		n, err := netpoll.Write(dst, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		if err == netpoll.ErrAgain {
			d.pend, d.po = append(t.c.l.getSmall(), p...), 0
			return
		}
		t.close()
		return
	}
}

// flush writes what is pending on d.
func (t *evTunnel) flush(d *tunDir, dst int) {
	for d.pending() {
		n, err := netpoll.Write(dst, d.pend[d.po:])
		if n > 0 {
			d.po += n
			continue
		}
		if err != netpoll.ErrAgain {
			t.close()
		}
		return
	}
	t.c.l.putSmall(d.pend)
	d.pend, d.po = nil, 0
	t.maybeDone()
}

func (t *evTunnel) sendClose(d *tunDir, dst int, toClient bool) {
	d.sent = true
	t.write(d, dst, closeFrame(!toClient))
	t.maybeDone()
}

// maybeDone closes the tunnel once close frames went both ways.
func (t *evTunnel) maybeDone() {
	if !t.closed && t.toClient.sent && t.toTarget.sent && !t.toClient.pending() && !t.toTarget.pending() {
		t.close()
	}
}

// goAway ends the tunnel gracefully from any goroutine (see goAwayNow).
func (t *evTunnel) goAway() {
	t.c.l.post(t.goAwayNow)
}

// goAwayNow sends a 1001 close frame each way at the next frame boundary
// and closes both connections once both went, or after goAwayGrace.
func (t *evTunnel) goAwayNow() {
	if t.closed || t.going {
		return
	}
	t.going = true
	t.graceDL = t.c.l.now + goAwayGrace
	if !t.toClient.sent && t.toClient.tr.atBoundary() {
		t.sendClose(&t.toClient, t.c.fd, true)
	}
	if !t.closed && !t.toTarget.sent && t.toTarget.tr.atBoundary() {
		t.sendClose(&t.toTarget, t.u.fd, false)
	}
	t.update()
}

// expire closes a tunnel past its going-away grace or idle limit.
func (t *evTunnel) expire(now time.Duration) {
	if t.graceDL != 0 && now >= t.graceDL || t.idle > 0 && now-t.last >= t.idle {
		t.close()
	}
}

// close closes both connections and records the exchange.
func (t *evTunnel) close() {
	if t.closed {
		return
	}
	t.closed = true
	c, u := t.c, t.u
	u.tun = nil
	u.close()
	t.target.End(pool.Outcome{Status: c.status, TTFB: c.ex.ttfb})
	t.pe.m.ws.Dec()
	c.l.s.b.tunnels.remove(t)
	c.readRTT()
	c.l.s.b.record(&c.ex)
	c.l.putSmall(t.toClient.pend)
	c.l.putSmall(t.toTarget.pend)
	c.tun = nil
	c.close()
}
