package lb

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path: plain HTTP/1.1 listeners accept connections themselves
// and serve requests in the fast subset (see fastparse.go) on the
// connection's goroutine, writing to and reading from pooled target
// connections directly, without net/http's per-request goroutines,
// channels and header maps. The first request outside the subset (TLS is
// never on this path; Upgrade, Expect, Transfer-Encoding, odd framing,
// sticky pools, trusted proxies, maintenance, no route ...) hands the
// connection, with the bytes read so far, to the listener's http.Server
// behind the smuggling guard, which serves it from then on.

// fastServer serves one plain listener.
type fastServer struct {
	b       *Balancer
	name    string
	lim     Limits
	ln      net.Listener
	handoff *chanListener

	// requests counts requests served on the fast path (for tests).
	requests atomic.Int64

	// stopping is set once shutdown or close begins; connections read it
	// (and publish their idle state in fastConn.idle) without the lock.
	stopping atomic.Bool

	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing bool
	wg      sync.WaitGroup
}

func newFastServer(b *Balancer, name string, lim Limits, ln net.Listener) *fastServer {
	return &fastServer{b: b, name: name, lim: lim, ln: ln, handoff: newChanListener(ln.Addr()), conns: map[*fastConn]struct{}{}}
}

// serve accepts until the listener closes; it returns nil after Shutdown
// or Close, else the accept error.
func (s *fastServer) serve() error {
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
		fc := &fastConn{s: s, c: c, raw: c}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[fc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go fc.serve()
	}
}

// setIdle records whether fc waits for a request; it returns false when
// the server is closing and fc must end instead. Lock-free: fc stores its
// state before it loads stopping, and shutdown stores stopping before it
// loads the states, so an idle connection is either seen idle (and
// closed) or sees stopping itself.
func (s *fastServer) setIdle(fc *fastConn, idle bool) bool {
	fc.idle.Store(idle)
	return !s.stopping.Load()
}

func (s *fastServer) done(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown stops accepting, closes idle connections and waits for the
// others to finish their request, or for ctx.
func (s *fastServer) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.stopping.Store(true)
	s.mu.Unlock()
	s.ln.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for fc := range s.conns {
			if fc.idle.Load() {
				fc.raw.Close()
			}
		}
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// close closes the listener and every connection and waits for their
// goroutines.
func (s *fastServer) close() {
	s.mu.Lock()
	s.closing = true
	s.stopping.Store(true)
	for fc := range s.conns {
		fc.raw.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
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
