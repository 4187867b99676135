package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener caps the open connections of a listener. Over the limit,
// Accept waits until a connection closes: new clients wait in the
// kernel's listen backlog (and are refused by the kernel once that is
// full) instead of being accepted and dropped.
type limitListener struct {
	net.Listener
	sem    chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// plainListener wraps every accepted connection in the smuggling guard.
type plainListener struct {
	net.Listener
	maxHead int // Limits.MaxHeaderBytes, for the guard
}

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardConn(c, l.maxHead), nil
}

// tlsListener terminates TLS itself so that HTTP/1.1 over TLS also runs
// through the smuggling guard: it accepts raw connections, runs each
// handshake in a goroutine of its own (bounded by the header timeout), and
// hands net/http either the *tls.Conn (ALPN "h2": net/http serves HTTP/2
// on it) or a guardConn around it (HTTP/1.1). With loops (the TLS fast
// path, evtls.go), HTTP/1.1 connections go to the event loops instead,
// which hand back (give) those they do not serve.
//
// The handshake goroutines are kept for the next connection (up to
// maxIdleHandshakers waiting), so that a new connection does not pay for
// a new goroutine and the growth of its stack through crypto/tls.
type tlsListener struct {
	inner   net.Listener
	cfg     atomic.Pointer[tls.Config]
	timeout time.Duration
	maxHead int         // Limits.MaxHeaderBytes, for the guard
	loops   *fastServer // nil: every connection goes to net/http
	// secrets: the KeyLogWriter of cfg when the loops serve TLS 1.3
	// records themselves (unless Limits.DisableTLSRecords, tlsrecpipe.go); nil
	// otherwise.
	secrets *secretLog
	conns   chan net.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// hs counts handshakes running, for drain; draining is set by drain
	// so that the accept loop's end does not cancel them.
	hs          sync.WaitGroup
	handshaking atomic.Int64
	draining    atomic.Bool
	acceptDone  chan struct{} // closed when acceptLoop returned
	// work hands an accepted connection to a handshaker waiting for one;
	// idle counts those waiting.
	work chan net.Conn
	idle atomic.Int64
	// fresh is the server's (listener.fresh): a connection is in it from
	// before it is handed to Accept, so drain's wait cannot miss it.
	fresh *freshConns
	errMu sync.Mutex
	err   error // accept error that ended the loop
	once  sync.Once
}

// maxIdleHandshakers bounds the handshake goroutines kept waiting for a
// connection: a burst's extra ones end (each holds a grown stack).
const maxIdleHandshakers = 16

func newTLSListener(inner net.Listener, cfg *tls.Config, handshakeTimeout time.Duration, maxHead int, fresh *freshConns, loops *fastServer) *tlsListener {
	l := &tlsListener{inner: inner, timeout: handshakeTimeout, maxHead: maxHead, loops: loops, conns: make(chan net.Conn), acceptDone: make(chan struct{}), work: make(chan net.Conn), fresh: fresh}
	if loops != nil && !loops.lim.DisableTLSRecords {
		l.secrets = newSecretLog()
		cfg = cfg.Clone()
		cfg.KeyLogWriter = l.secrets
	}
	l.cfg.Store(cfg)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.acceptDone)
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if l.draining.Load() {
				// drain closed the socket: handshakes go on; Close ends
				// the listener.
				return
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.cancel()
			return
		}
		l.hs.Add(1)
		l.handshaking.Add(1)
		select {
		case l.work <- c:
		default:
			l.wg.Add(1)
			go l.handshaker(c)
		}
	}
}

// handshaker runs the handshake of c, then of the connections handed to
// it while it waits, until the listener closes or enough others wait.
func (l *tlsListener) handshaker(c net.Conn) {
	defer l.wg.Done()
	for {
		l.handshake(c)
		if l.idle.Add(1) > maxIdleHandshakers {
			l.idle.Add(-1)
			return
		}
		select {
		case c = <-l.work:
			l.idle.Add(-1)
		case <-l.ctx.Done():
			l.idle.Add(-1)
			return
		}
	}
}

// handshake runs the TLS handshake of raw and hands the connection on:
// to a loop, or to the listener's http.Server.
func (l *tlsListener) handshake(raw net.Conn) {
	defer l.hs.Done()
	defer l.handshaking.Add(-1)
	under, pipe := raw, (*tlsPipe)(nil)
	if l.loops != nil {
		// The connection may move to a loop after the handshake.
		pipe = newTLSPipe(raw)
		under = pipe
		if l.secrets != nil {
			pipe.watch = &recWatch{log: l.secrets}
		}
	}
	tc := tls.Server(under, l.cfg.Load())
	// The deadline bounds the handshake; l.ctx ends it early (Close, or a
	// drain out of time).
	raw.SetDeadline(time.Now().Add(l.timeout))
	err := tc.HandshakeContext(l.ctx)
	var rec *tlsRec
	if pipe != nil {
		rec = pipe.takeRecords(tc, err == nil)
	}
	if err != nil {
		tc.Close()
		return
	}
	h2 := tc.ConnectionState().NegotiatedProtocol == "h2"
	if pipe != nil && (!h2 || !l.loops.lim.DisableH2FastPath) && l.loops.adoptTLS(tc, pipe, raw, rec) {
		return
	}
	raw.SetDeadline(time.Time{})
	keepAlive(raw)
	var c net.Conn = tc
	if !h2 {
		c = newGuardConn(tc, l.maxHead)
	}
	l.fresh.track(c, http.StateNew)
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		l.fresh.track(c, http.StateClosed)
		tc.Close()
	}
}

// keepAlive turns TCP keep-alive on for a connection net/http serves, as
// net.Listen's accepts do (the TLS listener's socket leaves it off for
// the loops): a long-lived HTTP/2 connection or tunnel notices a client
// that vanished.
func keepAlive(c net.Conn) {
	if lc, ok := c.(*limitConn); ok {
		c = lc.Conn
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true}) // Go's defaults: 15 s idle, 15 s apart, 9 probes
	}
}

// give hands a connection from the loops to the listener's http.Server,
// or closes it when the listener is closed.
func (l *tlsListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// drain stops accepting and waits, until ctx ends, for the handshakes
// running to end: those that succeed are still handed to Accept (the
// server serves them before its own shutdown), so a connection accepted
// just before a shutdown or a listener handoff gets its answer.
func (l *tlsListener) drain(ctx context.Context) {
	l.draining.Store(true)
	l.inner.Close()
	<-l.acceptDone // no handshake starts after this
	done := make(chan struct{})
	go func() {
		l.hs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		l.cancel() // ends the handshakes; hs.Wait returns
		<-done
	}
}

// Close stops accepting, closes connections still in their handshake and
// waits for the listener's goroutines.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// freshConns tracks the connections of an http.Server (its ConnState
// hook) on which no request was read yet. net/http's Shutdown closes
// such a connection if it stays silent 5 s, and drops, unanswered, a
// request it reads once the shutdown began; a connection accepted just
// before a shutdown or a listener handoff would lose its first request,
// which a client does not retry on a new connection. wait lets them send
// it first. HTTP/2 connections (a *tls.Conn: HTTP/1.1 ones come wrapped
// in the guard) are not tracked: HTTP/2's GOAWAY covers them.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]time.Time // when it became new
}

func newFreshConns() *freshConns { return &freshConns{conns: map[net.Conn]time.Time{}} }

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	if _, h2 := c.(*tls.Conn); h2 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.conns[c] = time.Now()
	} else {
		delete(f.conns, c)
	}
}

// wait returns once no connection is fresh but those older than max (the
// header timeout: net/http closes them by then), or when ctx ends.
func (f *freshConns) wait(ctx context.Context, max time.Duration) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		waiting := false
		for _, since := range f.conns {
			if time.Since(since) < max {
				waiting = true
				break
			}
		}
		f.mu.Unlock()
		if !waiting {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
