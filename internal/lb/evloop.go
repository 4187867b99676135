package lb

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
)

// The fast path runs on event loops: a few goroutines (one per core),
// each owning a poller (an epoll instance, internal/netpoll) and every
// client and target connection registered with it. A request is a chain
// of non-blocking reads and writes driven by readiness, with no
// goroutine, channel or timer per connection or request; the kernel's
// level-triggered readiness means a read that returned data is never
// followed by one that only learns the socket is empty. Everything a
// loop owns is touched only by its own goroutine; other goroutines reach
// it through post.

// sweepEvery bounds how late a deadline (header, idle, try, connect) is
// noticed.
const sweepEvery = 20 * time.Millisecond

// evHandler is a connection registered with a loop.
type evHandler interface {
	// event handles the readiness bits ev (netpoll.In, Out, Err, Hup) on
	// the loop's goroutine.
	event(ev netpoll.Events)
	// expire is called by the loop's sweep with the current loop time; the
	// handler acts on its passed deadline, if any.
	expire(now time.Duration)
}

type evSlot struct {
	h   evHandler
	gen uint32
}

// evLoop is one event loop.
type evLoop struct {
	s    *fastServer
	poll *netpoll.Poller
	base time.Time

	mu      sync.Mutex
	tasks   []func()
	spare   []func()
	stopped bool

	// nClients counts the client connections this loop holds or is about
	// to adopt; other loops read it to balance new connections.
	nClients atomic.Int64

	slots   []evSlot
	gen     uint32
	clients map[*evClient]struct{}
	ups     map[*evUp]struct{}
	h2s     map[*evH2Conn]struct{} // HTTP/2 connections (evh2.go)
	h2dirty []*evH2Conn            // those with frames to send this round
	h2spare []*evClient            // evClients of finished streams, for reuse
	h2free  []*evH2Stream          // streams that ended on the fast path, for reuse
	h2vals  h2Interned             // answer field values framed (evh2head.go)
	idle    map[upKey][]*evUp
	// dialing: per target, the requests waiting for a TLS handshake
	// (evtargettls.go); made on first use.
	dialing map[upKey]*dialQueue
	rh      h1.Response   // the response head being parsed (one at a time)
	scratch []byte        // tunnels read into it and write on at once
	bufs    [][]byte      // free read buffers (bufSize)
	smalls  [][]byte      // free write buffers
	reqs    []*evReq      // free request states (evclient.go)
	now     time.Duration // loop time of the current iteration
	quit    bool          // close: end once every connection is gone
	// draining: connections close after their current response.
	draining bool

	// The loop's own descriptor of the listening socket (evaccept.go).
	lnfd         int
	acceptPaused bool
	acceptResume time.Duration
	done         chan struct{}
}

func newEvLoop(s *fastServer) (*evLoop, error) {
	p, err := netpoll.Open()
	if err != nil {
		return nil, err
	}
	return &evLoop{
		s: s, poll: p, base: time.Now(), lnfd: -1, scratch: make([]byte, bufSize),
		clients: map[*evClient]struct{}{}, ups: map[*evUp]struct{}{}, idle: map[upKey][]*evUp{},
		done: make(chan struct{}),
	}, nil
}

// post runs f on the loop's goroutine; it reports false (and f does not
// run) when the loop has ended.
func (l *evLoop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.tasks = append(l.tasks, f)
	l.mu.Unlock()
	// Wake fails only when the loop closed its poller between the check
	// above and here: the loop is ending and f, queued after its last
	// round, does not run. A loop ends only after close, once every loop
	// stopped accepting and its own connections are gone, so what is still
	// posted then concerns a closed connection (a drain deadline) and may
	// be dropped.
	l.poll.Wake()
	return true
}

// A connection's token is its descriptor and the generation of its
// registration: a report that was queued for a descriptor before it was
// closed and its number reused finds another generation in the slot, and
// is dropped.
func evToken(fd int, gen uint32) uint64 { return uint64(uint32(fd)) | uint64(gen)<<32 }

// add registers h for fd with the readiness bits in events.
func (l *evLoop) add(fd int, events netpoll.Events, h evHandler) (uint32, error) {
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]evSlot, len(l.slots)+64)...)
	}
	l.gen++
	if l.gen == 0 {
		l.gen = 1
	}
	l.slots[fd] = evSlot{h: h, gen: l.gen}
	if err := l.poll.Add(fd, events, evToken(fd, l.gen)); err != nil {
		l.slots[fd] = evSlot{}
		return 0, err
	}
	return l.gen, nil
}

// mod changes the readiness bits watched for fd.
func (l *evLoop) mod(fd int, gen uint32, events netpoll.Events) {
	l.poll.Modify(fd, events, evToken(fd, gen))
}

// forget drops fd's handler before the loop closes fd, the only
// descriptor of its socket: closing it removes it from the poller, so no
// epoll_ctl is spent on that.
func (l *evLoop) forget(fd int) {
	if fd < len(l.slots) {
		l.slots[fd] = evSlot{}
	}
}

// del unregisters fd while its socket stays open (handed over, or a
// descriptor that is not the only one of its socket).
func (l *evLoop) del(fd int) {
	l.poll.Delete(fd)
	if fd < len(l.slots) {
		l.slots[fd] = evSlot{}
	}
}

// run is the loop's goroutine: it ends after close was posted and every
// connection is gone.
func (l *evLoop) run() {
	defer close(l.done)
	defer func() {
		l.mu.Lock()
		l.stopped = true
		l.mu.Unlock()
		l.poll.Close()
	}()
	events := make([]netpoll.Event, 256)
	var nextSweep time.Duration
	for {
		timeout := time.Duration(-1)
		if len(l.clients) > 0 || len(l.ups) > 0 || len(l.h2s) > 0 || l.acceptPaused {
			timeout = sweepEvery
		}
		n, err := l.poll.Wait(events, timeout)
		if err != nil {
			l.logger().Error("event loop wait failed", "error", err)
		}
		l.now = time.Since(l.base)
		for i := range n {
			ev := &events[i]
			tok := ev.Token()
			fd, gen := int(uint32(tok)), uint32(tok>>32)
			if fd < len(l.slots) {
				if s := l.slots[fd]; s.h != nil && s.gen == gen {
					l.dispatch(fd, s.h, ev.Events())
				}
			}
		}
		l.runTasks()
		if l.now >= nextSweep {
			nextSweep = l.now + sweepEvery
			l.sweep()
		}
		l.flushH2()
		if l.quit && len(l.clients) == 0 && len(l.ups) == 0 && len(l.h2s) == 0 {
			return
		}
	}
}

func (l *evLoop) runTasks() {
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = l.spare[:0]
	l.mu.Unlock()
	for i, f := range tasks {
		l.runTask(f)
		tasks[i] = nil
	}
	l.spare = tasks
}

// sweep hands the current time to every connection so that each acts on
// its passed deadline.
func (l *evLoop) sweep() {
	l.maybeResumeAccept()
	for c := range l.clients {
		l.expire(c.fd, c)
	}
	for u := range l.ups {
		l.expire(u.fd, u)
	}
	for c := range l.h2s {
		l.expire(c.fd, c)
	}
}

func (l *evLoop) logger() *slog.Logger { return l.s.b.log }

// closeAll closes every connection of the loop at once (Balancer close).
func (l *evLoop) closeAll() {
	l.quit = true
	l.unlisten()
	for c := range l.clients {
		if c.tun != nil && c.tun.going {
			continue // its close frames get their grace
		}
		c.abort(errClientWrite)
	}
	for u := range l.ups {
		if u.tun == nil {
			u.close()
		}
	}
	for c := range l.h2s {
		c.shut()
	}
}

// stopping begins a graceful shutdown: keep-alive clients waiting for
// their next request close now, the others after their current response
// (a new connection after its first).
func (l *evLoop) stopping() {
	l.draining = true
	for c := range l.h2s {
		c.drain() // GOAWAY: the streams begun finish
	}
	for c := range l.clients {
		if c.state != csIdle || c.r != c.w {
			continue
		}
		if c.served {
			c.close()
			continue
		}
		// A connection accepted just before the listener stopped has its
		// first request on the way (a new process took over the socket,
		// or a shutdown began): closing it would fail that request, as a
		// keep-alive client retries but a new connection's does not. It
		// gets the header timeout to send it, then closes after the
		// answer.
		if d := l.now + l.s.lim.HeaderTimeout; c.dl == 0 || c.dl > d {
			c.dl = d
		}
	}
}

// bufSize is the read buffer of a busy connection; an idle one has none.
const bufSize = 16 << 10

// Free-list bounds: what a burst leaves behind beyond these goes to the
// garbage collector.
const (
	maxFreeBufs   = 256
	maxFreeSmalls = 512
	maxSmallCap   = 64 << 10
)

func (l *evLoop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs[n-1] = nil
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, bufSize)
}

// putBuf keeps b for reuse when it is a whole read buffer (nil and grown
// buffers are dropped).
func (l *evLoop) putBuf(b []byte) {
	if cap(b) == bufSize && len(l.bufs) < maxFreeBufs {
		l.bufs = append(l.bufs, b[:bufSize])
	}
}

func (l *evLoop) getSmall() []byte {
	if n := len(l.smalls); n > 0 {
		b := l.smalls[n-1]
		l.smalls[n-1] = nil
		l.smalls = l.smalls[:n-1]
		return b
	}
	return make([]byte, 0, smallCap)
}

// smallCap is the capacity of a new write buffer.
const smallCap = 4 << 10

func (l *evLoop) putSmall(b []byte) {
	if b != nil && cap(b) <= maxSmallCap && len(l.smalls) < maxFreeSmalls {
		l.smalls = append(l.smalls, b[:0])
	}
}

// A panic while handling one connection must not take the balancer, and
// every other connection, down with it: the loop logs it, ends that
// connection (salvage) and goes on, as net/http does for a handler.

// salvager is a handler that can end its connection after a panic.
type salvager interface{ salvage() }

// errPanic ends a connection whose handling panicked.
var errPanic = errors.New("internal error while handling the connection")

func (l *evLoop) dispatch(fd int, h evHandler, ev netpoll.Events) {
	defer l.recoverConn(fd, h)
	h.event(ev)
}

func (l *evLoop) expire(fd int, h evHandler) {
	defer l.recoverConn(fd, h)
	h.expire(l.now)
}

func (l *evLoop) runTask(f func()) {
	defer func() {
		if r := recover(); r != nil {
			l.logger().Error("event loop: panic in a posted task", "listener", l.s.name, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// recoverConn, deferred, turns a panic into the end of h's connection.
func (l *evLoop) recoverConn(fd int, h evHandler) {
	r := recover()
	if r == nil {
		return
	}
	l.logger().Error("event loop: panic while handling a connection; closing it", "listener", l.s.name, "panic", r, "stack", string(debug.Stack()))
	defer func() {
		if r := recover(); r != nil {
			// Ending it cleanly failed too: at least stop hearing about it.
			l.logger().Error("event loop: panic while closing a connection after a panic", "panic", r)
			if fd >= 0 {
				l.del(fd)
			}
		}
	}()
	if s, ok := h.(salvager); ok {
		s.salvage()
	} else if fd >= 0 {
		l.del(fd)
	}
}

// salvage ends the client connection (and its try or tunnel).
func (c *evClient) salvage() { c.abort(errPanic) }

// salvage ends the target connection and the client's try with it.
func (u *evUp) salvage() {
	switch {
	case u.tun != nil:
		u.tun.close()
	case u.c != nil:
		c := u.c
		u.c = nil
		u.close()
		c.abort(errPanic)
	default:
		u.close()
	}
}
