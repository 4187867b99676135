// Package netpoll is the operating system's side of the balancer's event
// loops: an epoll instance with an eventfd to wake it from other
// goroutines (Poller), and the non-blocking socket calls the loops make
// (Accept, Dial, Read, Write, Close). Linux only. Nothing here allocates
// per event or per call on the paths a request takes: Wait fills a slice
// the caller owns, Read and Write go straight to the system call.
//
// It holds no policy: which descriptor is watched for what, what a token
// means and what to do on readiness belong to the caller (internal/lb).
package netpoll

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Events is a set of readiness bits: what a descriptor is watched for
// (Add, Modify) and what Wait reports for it.
type Events uint32

// The readiness bits. Err and Hup are always reported, watched or not.
// Exclusive is for Add only: among the pollers watching one descriptor
// with it (the listening socket of several loops), the kernel wakes one
// per readiness, not all; such a registration cannot be modified, only
// deleted and added again.
const (
	In        Events = unix.EPOLLIN
	Out       Events = unix.EPOLLOUT
	Err       Events = unix.EPOLLERR
	Hup       Events = unix.EPOLLHUP
	Exclusive Events = unix.EPOLLEXCLUSIVE
)

// Event is one readiness report filled in by Wait: the token given with
// the descriptor's Add or Modify, and its ready bits. Its layout is the
// kernel's epoll_event, so Wait hands the caller's slice to epoll_wait as
// it is.
type Event struct{ raw unix.EpollEvent }

// Token returns the token of the descriptor the event is about.
func (e *Event) Token() uint64 {
	return uint64(uint32(e.raw.Fd)) | uint64(uint32(e.raw.Pad))<<32
}

// Events returns the ready bits.
func (e *Event) Events() Events { return Events(e.raw.Events) }

// wakeToken is the eventfd's token; Add and Modify refuse it.
const wakeToken = math.MaxUint64

// ErrReservedToken is returned by Add and Modify for the token the
// poller keeps for its own wake-ups (the largest uint64).
var ErrReservedToken = errors.New("netpoll: token reserved for wake-ups")

// ErrClosed is returned by the methods of a closed Poller.
var ErrClosed = errors.New("netpoll: poller closed")

// Poller is an epoll instance and its wake-up eventfd. Add, Modify,
// Delete and Wait are for the goroutine that owns it (one event loop);
// Wake is safe from any goroutine, also during and after Close. Close
// must not run concurrently with Wait.
type Poller struct {
	ep    int
	wake  int
	woken atomic.Bool // a wake-up is written and not yet read by Wait

	mu     sync.Mutex // Close against Wake's write: fds must not be used once closed
	closed bool
}

// Open creates a poller: an epoll instance and a non-blocking eventfd
// watched by it, both close-on-exec.
func Open() (*Poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	p := &Poller{ep: ep, wake: wake}
	if err := p.ctl(unix.EPOLL_CTL_ADD, wake, In, wakeToken); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("netpoll: watch eventfd: %w", err)
	}
	return p, nil
}

func (p *Poller) ctl(op, fd int, ev Events, token uint64) error {
	e := unix.EpollEvent{Events: uint32(ev), Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	return unix.EpollCtl(p.ep, op, fd, &e)
}

// Add watches fd for the bits in ev; Wait reports them with token. fd
// must not be watched already. The error is the system call's errno
// (EEXIST, EBADF, EPERM for a regular file, ...) or ErrReservedToken.
func (p *Poller) Add(fd int, ev Events, token uint64) error {
	if token == wakeToken {
		return ErrReservedToken
	}
	return p.ctl(unix.EPOLL_CTL_ADD, fd, ev, token)
}

// Modify replaces the bits and the token fd is watched with.
func (p *Poller) Modify(fd int, ev Events, token uint64) error {
	if token == wakeToken {
		return ErrReservedToken
	}
	return p.ctl(unix.EPOLL_CTL_MOD, fd, ev, token)
}

// Delete stops watching fd. Closing a descriptor that is the only one of
// its file stops the watching too, without this call.
func (p *Poller) Delete(fd int) error {
	return unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, fd, nil)
}

// Wait blocks until a watched descriptor is ready, Wake is called or
// timeout passes (negative: no timeout; it is rounded up to whole
// milliseconds), and fills events from the start with the reports. It
// returns how many it filled: 0 after a time-out, a wake-up with nothing
// else ready, or an interrupted wait (EINTR). A wake-up is consumed here
// and never reported as an event. events must not be empty.
func (p *Poller) Wait(events []Event, timeout time.Duration) (int, error) {
	if len(events) == 0 {
		return 0, errors.New("netpoll: wait with no room for events")
	}
	ms := -1
	if timeout >= 0 {
		ms = int(min((timeout+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
	}
	raw := unsafe.Slice(&events[0].raw, len(events))
	n, err := unix.EpollWait(p.ep, raw, ms)
	if err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("netpoll: epoll_wait: %w", err)
	}
	for i := 0; i < n; {
		if events[i].Token() != wakeToken {
			i++
			continue
		}
		var b [8]byte
		Read(p.wake, b[:]) // EAGAIN: a wake-up read already; nothing to do
		p.woken.Store(false)
		n--
		events[i] = events[n]
	}
	return n, nil
}

// Wake makes the current or next Wait return. Calls before Wait
// consumes the wake-up cost nothing more: one write per wake-up. It
// returns ErrClosed after Close.
func (p *Poller) Wake() error {
	if p.woken.Swap(true) {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	one := [8]byte{1}
	if _, err := Write(p.wake, one[:]); err != nil && err != ErrAgain {
		return fmt.Errorf("netpoll: wake: %w", err)
	}
	return nil
}

// Close closes the epoll instance and the eventfd. Descriptors that were
// watched stay open (they are the caller's). A second Close returns
// ErrClosed.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.closed = true
	err := unix.Close(p.ep)
	if werr := unix.Close(p.wake); err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("netpoll: close: %w", err)
	}
	return nil
}
