package lb

import (
	"time"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// Accepting: every loop watches its own descriptor of the listening
// socket (EPOLLEXCLUSIVE: the kernel wakes one loop per new connection,
// not all) and accepts one connection per readiness report (level
// triggered: more waiting means another report), so a new connection
// costs an accept4, one setsockopt and one epoll_ctl, with no hand-off
// between threads and no accept4 that only learns the backlog is empty.
// Limits.MaxConns is kept by reserving a slot before accepting:
// over the limit a loop stops watching the socket and new clients wait in
// the kernel's backlog until a slot frees (checked at each close and
// sweep).

// acceptBackoff pauses accepting after an error such as EMFILE, which
// would otherwise wake the loop again at once.
const acceptBackoff = 100 * time.Millisecond

// evAcceptor is the listening descriptor's handler.
type evAcceptor struct{ l *evLoop }

func (a evAcceptor) event(netpoll.Events) { a.l.accept() }
func (a evAcceptor) expire(time.Duration) {}

// listen registers the loop's listening descriptor (l.lnfd).
func (l *evLoop) listen() error {
	_, err := l.add(l.lnfd, netpoll.In|netpoll.Exclusive, evAcceptor{l})
	return err
}

// unlisten closes the loop's listening descriptor.
func (l *evLoop) unlisten() {
	if l.lnfd < 0 {
		return
	}
	if !l.acceptPaused {
		l.del(l.lnfd)
	}
	netpoll.Close(l.lnfd)
	l.lnfd, l.acceptPaused = -1, false
}

// release frees a loop that never ran.
func (l *evLoop) release() {
	if l.lnfd >= 0 {
		netpoll.Close(l.lnfd)
		l.lnfd = -1
	}
	l.poll.Close()
}

// accept takes the connections waiting on the listening socket.
func (l *evLoop) accept() {
	s := l.s
	max := int64(s.lim.MaxConns)
	if l.lnfd < 0 || l.draining || l.quit {
		return
	}
	for max > 0 {
		cur := s.open.Load()
		if cur >= max {
			l.pauseAccept(0)
			return
		}
		if s.open.CompareAndSwap(cur, cur+1) {
			break
		}
	}
	if max <= 0 {
		s.open.Add(1)
	}
	fd, peer, err := netpoll.Accept(l.lnfd)
	if err != nil {
		s.open.Add(-1)
		if err == netpoll.ErrAgain {
			return // another loop took it, or the client left
		}
		l.logger().Warn("accept failed; pausing", "listener", s.name, "error", err)
		l.pauseAccept(l.now + acceptBackoff)
		return
	}
	client, remote := peer.Addr(), peer.String()
	s.conns.Add(1)
	// The kernel wakes the same loop for most new connections; keep the
	// loops within one connection of each other (a connection moves at
	// most once, here, before it has sent anything we read).
	to := l.lightest()
	to.nClients.Add(1)
	if to == l || !to.post(func() { to.adoptClient(fd, client, remote, s.releaseSlot, nil) }) {
		if to != l {
			to.nClients.Add(-1)
			l.nClients.Add(1)
		}
		l.adoptClient(fd, client, remote, s.releaseSlot, nil)
	}
}

// lightest returns l, or the loop holding the fewest client connections
// when l holds more than one above it.
func (l *evLoop) lightest() *evLoop {
	best, bn := l, l.nClients.Load()
	for _, o := range l.s.loops {
		if n := o.nClients.Load(); n < bn {
			best, bn = o, n
		}
	}
	if best != l && l.nClients.Load() <= bn+1 {
		return l
	}
	return best
}

// pauseAccept stops watching the listening socket until loop time until
// (0: until a connection slot frees).
func (l *evLoop) pauseAccept(until time.Duration) {
	if !l.acceptPaused {
		l.del(l.lnfd) // EPOLLEXCLUSIVE registrations cannot be modified
		l.acceptPaused = true
	}
	l.acceptResume = until
}

// maybeResumeAccept watches the listening socket again once the pause is
// over and a slot is free.
func (l *evLoop) maybeResumeAccept() {
	if !l.acceptPaused || l.lnfd < 0 || l.now < l.acceptResume {
		return
	}
	if max := int64(l.s.lim.MaxConns); max > 0 && l.s.open.Load() >= max {
		return
	}
	if err := l.listen(); err != nil {
		l.logger().Warn("resume accepting failed", "listener", l.s.name, "error", err)
		l.acceptResume = l.now + acceptBackoff
		return
	}
	l.acceptPaused = false
}

// salvage after a panic while accepting: keep listening.
func (a evAcceptor) salvage() {}
