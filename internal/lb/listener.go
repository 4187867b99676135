package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
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
// handshake in its own goroutine (bounded by the header timeout), and
// hands net/http either the *tls.Conn (ALPN "h2": net/http serves HTTP/2
// on it) or a guardConn around it (HTTP/1.1).
type tlsListener struct {
	inner   net.Listener
	cfg     atomic.Pointer[tls.Config]
	timeout time.Duration
	maxHead int // Limits.MaxHeaderBytes, for the guard
	conns   chan net.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error // accept error that ended the loop
	once    sync.Once
}

func newTLSListener(inner net.Listener, cfg *tls.Config, handshakeTimeout time.Duration, maxHead int) *tlsListener {
	l := &tlsListener{inner: inner, timeout: handshakeTimeout, maxHead: maxHead, conns: make(chan net.Conn)}
	l.cfg.Store(cfg)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.cancel()
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(raw, l.cfg.Load())
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	var c net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c = newGuardConn(tc, l.maxHead)
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		tc.Close()
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
