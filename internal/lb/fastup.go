package lb

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// upConn is a pooled keep-alive connection to one target, with its read
// buffer (response heads and bodies are read through it).
type upConn struct {
	c      *net.TCPConn
	raw    syscall.RawConn
	buf    []byte
	r, w   int       // unread bytes are buf[r:w]
	idle   time.Time // when it was put back
	reused bool

	// drainCtx is the target context whose drain deadline ends this
	// connection's I/O (by a deadline in the past); stopDrain undoes that.
	// Registered once per connection and target, not per request.
	drainCtx  context.Context
	stopDrain func() bool
}

// watch makes the drain deadline of ctx (a target's context) fail the
// connection's pending and future I/O.
func (uc *upConn) watch(ctx context.Context) {
	if uc.drainCtx == ctx {
		return
	}
	if uc.stopDrain != nil {
		uc.stopDrain()
	}
	c := uc.c
	uc.drainCtx = ctx
	uc.stopDrain = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// close closes the connection and drops its drain hook.
func (uc *upConn) close() {
	if uc.stopDrain != nil {
		uc.stopDrain()
		uc.stopDrain = nil
	}
	uc.c.Close()
}

const peekAfter = 200 * time.Millisecond

// upstreams pools idle connections per target address for one pool.
// Connections idle longer than the pool's idle limit are closed when met.
type upstreams struct {
	mu      sync.Mutex
	idle    map[string][]*upConn
	maxIdle int
	idleFor time.Duration
	dialer  net.Dialer
	closed  bool
}

func newUpstreams(pc PoolConfig, lim Limits) *upstreams {
	return &upstreams{
		idle:    map[string][]*upConn{},
		maxIdle: lim.MaxIdlePerHost,
		idleFor: lim.UpstreamIdle,
		dialer:  net.Dialer{Timeout: pc.ConnectTimeout, KeepAlive: 30 * time.Second},
	}
}

// get returns a pooled connection to addr that is still open, or dials.
// now is the current time (the caller has it). A dial failure is a
// *dialError.
func (u *upstreams) get(ctx context.Context, addr string, now time.Time) (*upConn, error) {
	for {
		u.mu.Lock()
		l := u.idle[addr]
		if len(l) == 0 {
			u.mu.Unlock()
			break
		}
		uc := l[len(l)-1]
		l[len(l)-1] = nil
		u.idle[addr] = l[:len(l)-1]
		u.mu.Unlock()
		// Peek only at connections idle long enough for a target to have
		// closed them; a busy pool skips the extra system call.
		if idle := now.Sub(uc.idle); idle > u.idleFor || idle > peekAfter && !uc.alive() {
			uc.close()
			continue
		}
		uc.reused = true
		return uc, nil
	}
	c, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, &dialError{net.UnknownNetworkError("not tcp")}
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return nil, &dialError{err}
	}
	return &upConn{c: tc, raw: raw, buf: make([]byte, 16<<10)}, nil
}

// alive peeks at the socket without blocking: a connection the target
// closed while idle reads EOF (or has stray bytes) and must not carry a
// request that may not be retried.
func (uc *upConn) alive() bool {
	ok := false
	var b [1]byte
	err := uc.raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && ok
}

// put returns a connection with no unread bytes to the pool, or closes it.
func (u *upstreams) put(addr string, uc *upConn) {
	uc.r, uc.w = 0, 0
	uc.idle = time.Now()
	u.mu.Lock()
	if u.closed || len(u.idle[addr]) >= u.maxIdle {
		u.mu.Unlock()
		uc.close()
		return
	}
	u.idle[addr] = append(u.idle[addr], uc)
	u.mu.Unlock()
}

// closeIdle closes every pooled connection; with final, later puts close
// their connection instead of pooling it.
func (u *upstreams) closeIdle(final bool) {
	u.mu.Lock()
	all := u.idle
	u.idle = map[string][]*upConn{}
	if final {
		u.closed = true
	}
	u.mu.Unlock()
	for _, l := range all {
		for _, uc := range l {
			uc.close()
		}
	}
}
