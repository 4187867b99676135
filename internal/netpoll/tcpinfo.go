package netpoll

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RTT is what the kernel knows of a TCP connection's round-trip time
// (getsockopt TCP_INFO): the smoothed estimate (tcpi_rtt), its mean
// deviation (tcpi_rttvar) and the lowest sample seen over the kernel's
// window of a few minutes (tcpi_min_rtt). The kernel keeps microseconds; a
// connection that has sent nothing yet has the estimate of its
// handshake. The zero RTT means "not known".
type RTT struct {
	Smoothed, Var, Min time.Duration
}

// TCPRTT reads the round-trip time of the TCP socket fd with one
// getsockopt(2) into a struct on the stack: it allocates nothing, so it
// may run once per request. It does not tell the scheduler that the
// goroutine may block (getsockopt of TCP_INFO never does).
func TCPRTT(fd int) (RTT, error) {
	var ti unix.TCPInfo
	n := uint32(unix.SizeofTCPInfo)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return RTT{}, e
	}
	r := RTT{Smoothed: time.Duration(ti.Rtt) * time.Microsecond, Var: time.Duration(ti.Rttvar) * time.Microsecond}
	// Kernels before 4.6 fill less of the struct; n says how much.
	// ~0 is "no sample yet".
	if uintptr(n) >= unsafe.Offsetof(ti.Min_rtt)+unsafe.Sizeof(ti.Min_rtt) && ti.Min_rtt != ^uint32(0) {
		r.Min = time.Duration(ti.Min_rtt) * time.Microsecond
	}
	return r, nil
}
