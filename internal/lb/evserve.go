package lb

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The fast path: plain HTTP/1.1 listeners accept connections themselves
// and serve requests in the fast subset (see fastparse.go) on event loops
// (evloop.go), writing to and reading from pooled target connections
// directly, without net/http's per-request goroutines, channels and
// header maps. The first request outside the subset (TLS is never on
// this path; Upgrade, Expect, Transfer-Encoding, odd framing, bodies
// larger than a buffer, trusted proxies, maintenance, no
// route ...) hands the connection, with the bytes read so far, to the
// listener's http.Server behind the smuggling guard, which serves it from
// then on.

// fastServer serves one plain listener.
type fastServer struct {
	b       *Balancer
	name    string
	lim     Limits
	ln      net.Listener
	handoff *chanListener

	// requests counts requests served on the fast path (for tests).
	requests atomic.Int64
	// conns counts the client connections the loops hold.
	conns atomic.Int64

	mu      sync.Mutex
	loops   []*evLoop
	next    atomic.Uint32
	closing bool
	wg      sync.WaitGroup // hand-over goroutines
}

func newFastServer(b *Balancer, name string, lim Limits, ln net.Listener) *fastServer {
	return &fastServer{b: b, name: name, lim: lim, ln: ln, handoff: newChanListener(ln.Addr())}
}

// serve starts the loops and accepts until the listener closes; it
// returns nil after shutdown or close, else the accept error.
func (s *fastServer) serve() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	n := s.lim.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	n = min(n, 64)
	for range n {
		l, err := newEvLoop(s)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.loops = append(s.loops, l)
		go l.run()
	}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.adopt(c)
	}
}

// adopt moves an accepted connection onto a loop: the loop gets its own
// descriptor of the socket, and Go's poller lets go of it.
func (s *fastServer) adopt(c net.Conn) {
	var release func()
	inner := c
	if lc, ok := c.(*limitConn); ok {
		inner, release = lc.Conn, lc.releaseOnce
	}
	tc, ok := inner.(*net.TCPConn)
	if !ok {
		s.handoff.give(newGuardConn(c))
		return
	}
	client := clientAddr(c)
	remote := c.RemoteAddr().String()
	rc, err := tc.SyscallConn()
	fd := -1
	if err == nil {
		rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) })
	}
	tc.Close()
	if err != nil || fd < 0 {
		if release != nil {
			release()
		}
		return
	}
	s.conns.Add(1)
	l := s.loops[int(s.next.Add(1))%len(s.loops)]
	if !l.post(func() { l.adoptClient(fd, client, remote, release) }) {
		unix.Close(fd)
		s.conns.Add(-1)
		if release != nil {
			release()
		}
	}
}

// shutdown stops accepting, closes idle connections and waits for the
// others to finish their request, or for ctx.
func (s *fastServer) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	loops := s.loops
	s.mu.Unlock()
	s.ln.Close()
	for _, l := range loops {
		l.post(func() {
			l.stopping()
		})
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// close closes the listener and every connection and waits for the loops
// to end.
func (s *fastServer) close() {
	s.mu.Lock()
	s.closing = true
	loops := s.loops
	s.mu.Unlock()
	s.ln.Close()
	for _, l := range loops {
		if l.post(func() { l.closeAll() }) {
			<-l.done
		}
	}
	s.wg.Wait()
}

// give hands c to the listener's http.Server in the background (the loop
// must not wait for its Accept).
func (s *fastServer) give(c net.Conn) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.handoff.give(c)
	}()
}

// chanListener is the net.Listener of the http.Server behind a fast
// listener: it accepts the connections the fast path hands over.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// give hands c to the server, or closes it when the listener is closed.
func (l *chanListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn replays bytes the fast path read before handing over.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// clientAddr returns the peer's address, unmapped.
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.IPv4Unspecified()
}

// fdConn turns a loop's descriptor into a net.Conn for the net/http path;
// the descriptor is closed (the conn has its own).
func fdConn(fd int, release func()) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		if release != nil {
			release()
		}
		return nil, err
	}
	if release != nil {
		c = &limitConn{Conn: c, release: release}
	}
	return c, nil
}
