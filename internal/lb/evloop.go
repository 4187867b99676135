package lb

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/h1"
)

// The fast path runs on event loops: a few goroutines (one per core),
// each owning an epoll instance and every client and target connection
// registered with it. A request is a chain of non-blocking reads and
// writes driven by readiness, with no goroutine, channel or timer per
// connection or request; the kernel's level-triggered readiness means a
// read that returned data is never followed by one that only learns the
// socket is empty. Everything a loop owns is touched only by its own
// goroutine; other goroutines reach it through post.

// sweepEvery bounds how late a deadline (header, idle, try, connect) is
// noticed.
const sweepEvery = 20 * time.Millisecond

// evHandler is a connection registered with a loop.
type evHandler interface {
	// event handles the readiness bits ev (EPOLLIN, EPOLLOUT, EPOLLERR,
	// EPOLLHUP) on the loop's goroutine.
	event(ev uint32)
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
	ep   int
	wake int // eventfd: post wakes the loop with it
	base time.Time

	mu      sync.Mutex
	tasks   []func()
	woken   atomic.Bool
	spare   []func()
	stopped bool

	// nClients counts the client connections this loop holds or is about
	// to adopt; other loops read it to balance new connections.
	nClients atomic.Int64

	slots   []evSlot
	gen     uint32
	clients map[*evClient]struct{}
	ups     map[*evUp]struct{}
	idle    map[upKey][]*evUp
	rh      h1.Response   // the response head being parsed (one at a time)
	scratch []byte        // tunnels read into it and write on at once
	bufs    [][]byte      // free read buffers (bufSize)
	smalls  [][]byte      // free write buffers
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
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	l := &evLoop{
		s: s, ep: ep, wake: wake, base: time.Now(), lnfd: -1, scratch: make([]byte, bufSize),
		clients: map[*evClient]struct{}{}, ups: map[*evUp]struct{}{}, idle: map[upKey][]*evUp{},
		done: make(chan struct{}),
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	return l, nil
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
	if !l.woken.Swap(true) {
		var one = [8]byte{1}
		unix.Write(l.wake, one[:])
	}
	return true
}

// add registers h for fd with the readiness bits in events.
func (l *evLoop) add(fd int, events uint32, h evHandler) (uint32, error) {
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]evSlot, len(l.slots)+64)...)
	}
	l.gen++
	if l.gen == 0 {
		l.gen = 1
	}
	l.slots[fd] = evSlot{h: h, gen: l.gen}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(l.gen)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.slots[fd] = evSlot{}
		return 0, err
	}
	return l.gen, nil
}

// mod changes the readiness bits watched for fd.
func (l *evLoop) mod(fd int, gen, events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(gen)}
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, fd, &ev)
}

// forget drops fd's handler before the loop closes fd, the only
// descriptor of its socket: closing it removes it from epoll, so no
// epoll_ctl is spent on that.
func (l *evLoop) forget(fd int) {
	if fd < len(l.slots) {
		l.slots[fd] = evSlot{}
	}
}

// del unregisters fd while its socket stays open (handed over, or a
// descriptor that is not the only one of its socket).
func (l *evLoop) del(fd int) {
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
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
		unix.Close(l.ep)
		unix.Close(l.wake)
	}()
	events := make([]unix.EpollEvent, 256)
	var nextSweep time.Duration
	for {
		timeout := -1
		if len(l.clients) > 0 || len(l.ups) > 0 || l.acceptPaused {
			timeout = int(sweepEvery / time.Millisecond)
		}
		n, err := unix.EpollWait(l.ep, events, timeout)
		if err != nil && err != unix.EINTR {
			l.logger().Error("event loop wait failed", "error", err)
			n = 0
		}
		l.now = time.Since(l.base)
		for i := 0; i < n; i++ {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				unix.Read(l.wake, b[:])
				l.woken.Store(false)
				continue
			}
			if fd < len(l.slots) {
				if s := l.slots[fd]; s.h != nil && s.gen == uint32(ev.Pad) {
					l.dispatch(fd, s.h, ev.Events)
				}
			}
		}
		l.runTasks()
		if l.now >= nextSweep {
			nextSweep = l.now + sweepEvery
			l.sweep()
		}
		if l.quit && len(l.clients) == 0 && len(l.ups) == 0 {
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
}

// stopping begins a graceful shutdown: clients waiting for a request
// close now, the others after their current response.
func (l *evLoop) stopping() {
	l.draining = true
	for c := range l.clients {
		if c.state == csIdle && c.r == c.w {
			c.close()
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
	return make([]byte, 0, 4<<10)
}

func (l *evLoop) putSmall(b []byte) {
	if b != nil && cap(b) <= maxSmallCap && len(l.smalls) < maxFreeSmalls {
		l.smalls = append(l.smalls, b[:0])
	}
}

// sysRead and sysWrite are read(2) and write(2) on the loops' sockets,
// which are all non-blocking: a call never waits, so it need not tell the
// scheduler it may (the entersyscall/exitsyscall pair of unix.Read costs
// a few percent of a request). They return -1 and the errno on failure,
// 0 and nil at end of file.
func sysRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// A panic while handling one connection must not take the balancer, and
// every other connection, down with it: the loop logs it, ends that
// connection (salvage) and goes on, as net/http does for a handler.

// salvager is a handler that can end its connection after a panic.
type salvager interface{ salvage() }

// errPanic ends a connection whose handling panicked.
var errPanic = errors.New("internal error while handling the connection")

func (l *evLoop) dispatch(fd int, h evHandler, ev uint32) {
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
