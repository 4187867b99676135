package netpoll

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrAgain is what Read, Write and Accept return when the descriptor is
// not ready (EAGAIN): wait for its readiness and call again. Compare
// with ==; it is the errno itself.
var ErrAgain error = unix.EAGAIN

// Read is read(2) on a non-blocking descriptor. It returns the bytes
// read, or 0 and nil at end of file, or -1 and the errno (ErrAgain when
// nothing is there yet). An interrupted call (EINTR) is made again.
//
// It does not tell the scheduler that the goroutine may block, as
// syscall.Read does: on a non-blocking descriptor it never does, and the
// entersyscall/exitsyscall pair costs a few percent of a proxied request.
// So never call it on a descriptor that may block.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(n), nil
	}
}

// Write is write(2) on a non-blocking descriptor, as Read is read(2): it
// returns the bytes written, or -1 and the errno (ErrAgain when the
// socket's buffer is full; EPIPE, not SIGPIPE, when the peer is gone, as
// Go ignores SIGPIPE on descriptors other than 1 and 2).
func Write(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(n), nil
	}
}

// Close closes a descriptor (of Accept, Dial or Dup). Closing the last
// descriptor of a socket also removes it from every poller.
func Close(fd int) error { return unix.Close(fd) }

// Dup returns a new close-on-exec descriptor of fd's file, for a poller
// of its own: each event loop watches its own descriptor of a shared
// listening socket, so that closing one never leaves another loop
// holding a number that may be reused.
func Dup(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl dupfd", err)
	}
	return nfd, nil
}

// Accept takes one connection waiting on the non-blocking listening
// socket lnfd with accept4(2): the new descriptor is non-blocking and
// close-on-exec, with TCP_NODELAY set (the loops write whole answers, so
// Nagle's algorithm would only delay them), and peer is the client's
// address, an IPv4-mapped one unmapped (the zero address and port for
// an address family other than IP). The peer is read from what accept4
// filled in: unix.Accept4 spends a getsockopt per connection on telling
// IP sockets from others.
//
// When no connection is waiting, or the one waiting was aborted by its
// client before it was taken (ECONNABORTED), it returns ErrAgain. Other
// errors are the errno (EMFILE, ENFILE, ENOBUFS, ...): the socket stays
// readable, so a caller should back off before trying again.
func Accept(lnfd int) (fd int, peer netip.AddrPort, err error) {
	var rsa unix.RawSockaddrAny
	alen := uint32(unix.SizeofSockaddrAny)
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lnfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&alen)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ECONNABORTED:
			return -1, netip.AddrPort{}, ErrAgain
		default:
			return -1, netip.AddrPort{}, e
		}
		fd = int(r)
		break
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // fails only on a non-TCP socket: nothing to set there
	return fd, peerOf(&rsa), nil
}

// peerOf returns the address in rsa, unmapped.
func peerOf(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port)) // network byte order
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
}

// Dial opens a non-blocking, close-on-exec TCP socket to ap and starts
// connecting it, with TCP_NODELAY and, when keepAlive > 0, TCP
// keep-alive probes after keepAlive of silence (whole seconds, at least
// one). pending reports that the connection is still being made: the
// socket becomes writable (Out) when it is done, and ConnectError then
// tells how it went. An error (the socket is closed then) is a
// *net.OpError naming ap.
func Dial(ap netip.AddrPort, keepAlive time.Duration) (fd int, pending bool, err error) {
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if a := ap.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	opErr := func(call string, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError(call, err)}
	}
	fd, err = unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, opErr("socket", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if keepAlive > 0 {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, max(int(keepAlive/time.Second), 1))
	}
	err = unix.Connect(fd, sa)
	if err == unix.EINTR {
		// The connection goes on being made in the background (a second
		// connect would report EALREADY); its end is reported as for
		// EINPROGRESS.
		err = unix.EINPROGRESS
	}
	switch err {
	case nil:
		return fd, false, nil
	case unix.EINPROGRESS:
		return fd, true, nil
	}
	unix.Close(fd)
	return -1, false, opErr("connect", err)
}

// ConnectError reports how a pending connection of Dial ended, once its
// socket is writable or in error: nil when it is connected, else the
// reason (a *os.SyscallError of "connect", e.g. with ECONNREFUSED).
func ConnectError(fd int) error {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soerr != 0 {
		return os.NewSyscallError("connect", syscall.Errno(soerr))
	}
	return nil
}
