package netpoll

import (
	"errors"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCPRTT reads the round-trip time of both ends of a loopback
// connection that carried data, of a descriptor that is not a TCP socket
// (an error, nothing made up) and checks that a read allocates nothing.
func TestTCPRTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A few exchanges, so that both ends have samples of data and ACKs.
	buf := make([]byte, 4)
	for range 5 {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	for _, conn := range []net.Conn{c, s} {
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var r RTT
		var rerr error
		var allocs float64
		if err := rc.Control(func(fd uintptr) {
			r, rerr = TCPRTT(int(fd))
			allocs = testing.AllocsPerRun(100, func() { TCPRTT(int(fd)) })
		}); err != nil {
			t.Fatal(err)
		}
		if rerr != nil {
			t.Fatalf("TCPRTT: %v", rerr)
		}
		// Loopback: above zero (the kernel counts at least its tick of a
		// microsecond) and far below a second.
		if r.Smoothed <= 0 || r.Smoothed > 1e9 || r.Min <= 0 || r.Min > r.Smoothed+r.Var || r.Var < 0 {
			t.Errorf("%s: implausible %+v", conn.LocalAddr(), r)
		}
		if allocs != 0 {
			t.Errorf("TCPRTT allocates %v times per call", allocs)
		}
	}

	// Not a TCP socket: the kernel's error, no figure.
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r, err := TCPRTT(int(f.Fd())); !errors.Is(err, unix.ENOTSOCK) || r != (RTT{}) {
		t.Errorf("TCPRTT(file) = %+v, %v; want ENOTSOCK", r, err)
	}
}

// BenchmarkTCPRTT is the cost the balancer adds per request: one
// getsockopt(TCP_INFO) on a connected loopback socket.
func BenchmarkTCPRTT(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	rc.Control(func(fd uintptr) {
		for b.Loop() {
			if _, err := TCPRTT(int(fd)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
