package netpoll

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen returns a listener on addr and a descriptor of its own of the
// listening socket (as each loop holds), both closed at the end.
func listen(t *testing.T, addr string) (*net.TCPListener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = Dup(int(s)) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(fd) })
	return ln.(*net.TCPListener), fd
}

// connected waits until the pending connection on fd is made.
func connected(t *testing.T, p *Poller, fd int) {
	t.Helper()
	if err := p.Add(fd, Out, uint64(fd)); err != nil {
		t.Fatal(err)
	}
	defer p.Delete(fd)
	if got := wait(t, p, waitFor); len(got) != 1 || got[0].Events()&Out == 0 {
		t.Fatalf("connect: %+v, want the socket writable", got)
	}
	if err := ConnectError(fd); err != nil {
		t.Fatalf("connect: %v", err)
	}
}

// acceptOne waits for the listening descriptor to be readable and
// accepts one connection.
func acceptOne(t *testing.T, p *Poller, lnfd int) (int, netip.AddrPort) {
	t.Helper()
	if err := p.Add(lnfd, In|Exclusive, 1); err != nil {
		t.Fatal(err)
	}
	defer p.Delete(lnfd)
	if got := wait(t, p, waitFor); len(got) != 1 {
		t.Fatalf("listening socket: %+v, want it readable", got)
	}
	fd, peer, err := Accept(lnfd)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { Close(fd) })
	return fd, peer
}

func sockOpt(t *testing.T, fd, level, opt int) int {
	t.Helper()
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkSetUp: the descriptor is non-blocking, close-on-exec and has
// TCP_NODELAY.
func checkSetUp(t *testing.T, what string, fd int) {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("%s: flags %#x, %v: not non-blocking", what, fl, err)
	}
	fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || fdfl&unix.FD_CLOEXEC == 0 {
		t.Errorf("%s: descriptor flags %#x, %v: not close-on-exec", what, fdfl, err)
	}
	if sockOpt(t, fd, unix.IPPROTO_TCP, unix.TCP_NODELAY) == 0 {
		t.Errorf("%s: TCP_NODELAY not set", what)
	}
}

// TestAcceptDialReadWrite: a connection dialled and accepted on
// 127.0.0.1 carries bytes both ways; the accepted side knows the
// dialler's address; reads of an empty socket return ErrAgain and of a
// closed one end of file.
func TestAcceptDialReadWrite(t *testing.T) {
	p := openPoller(t)
	ln, lnfd := listen(t, "127.0.0.1:0")
	if fd, _, err := Accept(lnfd); err != ErrAgain {
		t.Fatalf("accept with none waiting: fd %d, %v; want ErrAgain", fd, err)
	}

	cfd, pending, err := Dial(ln.Addr().(*net.TCPAddr).AddrPort(), 45*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cOpen := true
	defer func() {
		if cOpen {
			Close(cfd)
		}
	}()
	if pending {
		connected(t, p, cfd)
	}
	checkSetUp(t, "dialled", cfd)
	if sockOpt(t, cfd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 0 || sockOpt(t, cfd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) != 45 {
		t.Errorf("dialled: keep-alive not set to 45 s")
	}

	sfd, peer := acceptOne(t, p, lnfd)
	checkSetUp(t, "accepted", sfd)
	local, err := unix.Getsockname(cfd)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(local.(*unix.SockaddrInet4).Port))
	if peer != want {
		t.Fatalf("peer %v, want the dialler's address %v", peer, want)
	}

	buf := make([]byte, 64)
	if n, err := Read(sfd, buf); n != -1 || err != ErrAgain {
		t.Fatalf("read with nothing sent: %d, %v; want -1, ErrAgain", n, err)
	}
	for _, dir := range []struct {
		name     string
		from, to int
	}{{"client to server", cfd, sfd}, {"server to client", sfd, cfd}} {
		if n, err := Write(dir.from, []byte("hello "+dir.name)); n != len("hello "+dir.name) || err != nil {
			t.Fatalf("%s: write %d, %v", dir.name, n, err)
		}
		if err := p.Add(dir.to, In, 7); err != nil {
			t.Fatal(err)
		}
		wait(t, p, waitFor)
		p.Delete(dir.to)
		if n, err := Read(dir.to, buf); err != nil || string(buf[:n]) != "hello "+dir.name {
			t.Fatalf("%s: read %q, %v", dir.name, buf[:max(n, 0)], err)
		}
	}
	if n, err := Write(sfd, nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}

	cOpen = false
	Close(cfd)
	if err := p.Add(sfd, In, 8); err != nil {
		t.Fatal(err)
	}
	wait(t, p, waitFor)
	if n, err := Read(sfd, buf); n != 0 || err != nil {
		t.Fatalf("read after the peer closed: %d, %v; want 0, nil", n, err)
	}
}

// TestAcceptUnmapsPeer: on a dual-stack listener an IPv4 client's
// address is reported as IPv4, not IPv4-mapped IPv6.
func TestAcceptUnmapsPeer(t *testing.T) {
	p := openPoller(t)
	ln, lnfd := listen(t, "[::]:0")
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, addr := range []string{"127.0.0.1", "::1"} {
		cfd, pending, err := Dial(netip.AddrPortFrom(netip.MustParseAddr(addr), port), 0)
		if err != nil {
			if addr == "::1" {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		if pending {
			connected(t, p, cfd)
		}
		_, peer := acceptOne(t, p, lnfd)
		Close(cfd)
		if peer.Addr().String() != addr || peer.Port() == 0 {
			t.Fatalf("peer %v, want %s and a port", peer, addr)
		}
	}
}

// TestDialRefused: a connection to a port where nothing listens fails,
// at once or once the socket reports, naming the refusal.
func TestDialRefused(t *testing.T) {
	p := openPoller(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	fd, pending, err := Dial(ap, 0)
	if err == nil && pending {
		defer Close(fd)
		if err := p.Add(fd, Out, 1); err != nil {
			t.Fatal(err)
		}
		if got := wait(t, p, waitFor); len(got) != 1 || got[0].Events()&(Err|Hup) == 0 {
			t.Fatalf("refused connection: %+v, want Err or Hup", got)
		}
		err = ConnectError(fd)
	} else if err == nil {
		Close(fd)
		t.Fatalf("connected to %v where nothing listens", ap)
	} else if fd != -1 {
		t.Fatalf("failed dial returned descriptor %d", fd)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %v: %v, want ECONNREFUSED", ap, err)
	}
}
