package lb

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// The fast path: plain HTTP/1.1 listeners accept connections themselves
// and serve requests in the fast subset (see internal/h1, ParseRequest)
// on event loops (evloop.go), writing to and reading from pooled target
// connections directly, without net/http's per-request goroutines,
// channels and header maps; TLS listeners do the same with their
// HTTP/1.1 connections after the handshake (evtls.go; off with
// Limits.DisableTLSFastPath). The first request outside the subset (Upgrade over TLS,
// Expect, Transfer-Encoding, odd framing, bodies larger than a buffer,
// trusted proxies, maintenance, no route ...) hands the connection, with
// the bytes read so far, to the listener's http.Server behind the
// smuggling guard, which serves it from then on.

// fastServer serves one plain listener, or the HTTP/1.1 connections of
// a TLS listener (evtls.go).
type fastServer struct {
	b    *Balancer
	name string
	lm   *listenerMetrics
	lim  Limits
	ln   *net.TCPListener // nil for TLS: the loops do not accept
	// handoff is the plain listener's http.Server's listener; giveTo
	// hands a connection to the listener's http.Server (to handoff, or to
	// the TLS listener).
	handoff *chanListener
	giveTo  func(net.Conn)

	// requests counts requests served on the fast path (for tests).
	requests atomic.Int64
	// conns counts the client connections the loops hold; open also
	// counts those handed to net/http, against Limits.MaxConns.
	conns atomic.Int64
	open  atomic.Int64

	mu       sync.Mutex
	loops    []*evLoop
	closing  bool
	accepts  bool          // the loops accept (serve ran, stopAccepting not yet)
	stopped  chan struct{} // closed when serve must return
	ready    chan struct{} // closed once every loop accepts
	stopOnce sync.Once
	wg       sync.WaitGroup // hand-over goroutines
}

func newFastServer(b *Balancer, name string, lim Limits, ln *net.TCPListener) *fastServer {
	s := &fastServer{b: b, name: name, lm: b.metrics.forListener(name), lim: lim, ln: ln, handoff: newChanListener(ln.Addr()), stopped: make(chan struct{}), ready: make(chan struct{})}
	s.giveTo = s.handoff.give
	return s
}

// serve starts the loops, each accepting on its own descriptor of the
// listening socket, and returns once shutdown or close began (nil) or
// when the loops cannot start.
func (s *fastServer) serve() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	n := s.lim.Loops
	if n <= 0 {
		n = min(runtime.NumCPU(), runtime.GOMAXPROCS(0))
	}
	n = min(n, 64)
	var rc syscall.RawConn
	if s.ln != nil {
		var err error
		if rc, err = s.ln.SyscallConn(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("listener %s: %w", s.name, err)
		}
	}
	for range n {
		l, err := newEvLoop(s)
		if err == nil && rc != nil {
			cerr := rc.Control(func(fd uintptr) { l.lnfd, err = netpoll.Dup(int(fd)) })
			if err == nil {
				err = cerr
			}
			if err == nil {
				err = l.listen()
			}
			if err != nil {
				l.release()
			}
		}
		if err != nil {
			s.mu.Unlock()
			s.close()
			return fmt.Errorf("listener %s: start event loop: %w", s.name, err)
		}
		s.loops = append(s.loops, l)
	}
	// Started only once the set is complete: accepting loops read it.
	for _, l := range s.loops {
		go l.run()
	}
	s.accepts = true
	close(s.ready)
	s.mu.Unlock()
	<-s.stopped
	return nil
}

// releaseSlot gives back a connection's place under Limits.MaxConns.
func (s *fastServer) releaseSlot() { s.open.Add(-1) }

// stopAccepting makes every loop close its listening descriptor, then
// closes the listener itself: the socket stops listening once all are
// closed. Each loop closes its own descriptor, so none is ever used after
// a close (when its number could belong to another socket).
func (s *fastServer) stopAccepting() {
	s.mu.Lock()
	s.closing = true
	loops, accepts := s.loops, s.accepts
	s.accepts = false
	s.mu.Unlock()
	if accepts {
		var wg sync.WaitGroup
		for _, l := range loops {
			wg.Add(1)
			if !l.post(func() { l.unlisten(); wg.Done() }) {
				wg.Done()
			}
		}
		wg.Wait()
	}
	if s.ln != nil {
		s.ln.Close()
	}
	s.stopOnce.Do(func() { close(s.stopped) })
}

// shutdown stops accepting, closes idle connections and waits for the
// others to finish their request, or for ctx.
func (s *fastServer) shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
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
	s.stopAccepting()
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
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
		s.giveTo(c)
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
