package netpoll

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFor bounds every wait of these tests: readiness that is due
// arrives at once, so reaching it is a failure, not slowness.
const waitFor = 10 * time.Second

func openPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pipe returns a non-blocking pipe, closed at the end of the test.
func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// wait returns the events of one Wait.
func wait(t *testing.T, p *Poller, timeout time.Duration) []Event {
	t.Helper()
	events := make([]Event, 8)
	n, err := p.Wait(events, timeout)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return events[:n]
}

// TestPollerReportsReadinessWithToken: a descriptor is reported with the
// whole 64-bit token it was added or modified with, for the bits it is
// watched for, and no more once deleted.
func TestPollerReportsReadinessWithToken(t *testing.T) {
	p := openPoller(t)
	// The write end is closed by the test itself (a cleanup closing it
	// again could close a reused number).
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := fds[0], fds[1]
	t.Cleanup(func() { unix.Close(r) })
	wOpen := true
	defer func() {
		if wOpen {
			unix.Close(w)
		}
	}()
	const tokR, tokW = 0xfedc_ba98_0000_0007, 1<<32 | 9
	if err := p.Add(r, In, tokR); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, p, 0); len(got) != 0 {
		t.Fatalf("empty pipe: %d events, want none", len(got))
	}
	if _, err := Write(w, []byte("x")); err != nil {
		t.Fatal(err)
	}
	got := wait(t, p, waitFor)
	if len(got) != 1 || got[0].Token() != tokR || got[0].Events()&In == 0 {
		t.Fatalf("readable pipe: %+v, want token %#x with In", got, uint64(tokR))
	}
	// Level triggered: still readable, still reported.
	if got := wait(t, p, 0); len(got) != 1 {
		t.Fatalf("second wait: %d events, want the readable pipe again", len(got))
	}

	if err := p.Add(w, Out, tokW); err != nil {
		t.Fatal(err)
	}
	if err := p.Modify(r, 0, tokR+1); err != nil {
		t.Fatal(err)
	}
	got = wait(t, p, waitFor)
	if len(got) != 1 || got[0].Token() != tokW || got[0].Events() != Out {
		t.Fatalf("writable end only: %+v, want token %#x with Out", got, uint64(tokW))
	}
	if err := p.Modify(r, In, tokR+1); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(w); err != nil {
		t.Fatal(err)
	}
	got = wait(t, p, waitFor)
	if len(got) != 1 || got[0].Token() != tokR+1 {
		t.Fatalf("after modify and delete: %+v, want the read end with token %#x", got, uint64(tokR+1))
	}

	// Closing the writer is a hang-up of the reader, reported unasked.
	var b [4]byte
	if n, err := Read(r, b[:]); n != 1 || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	if err := p.Modify(r, 0, tokR); err != nil {
		t.Fatal(err)
	}
	wOpen = false
	if err := Close(w); err != nil {
		t.Fatal(err)
	}
	got = wait(t, p, waitFor)
	if len(got) != 1 || got[0].Events()&Hup == 0 {
		t.Fatalf("writer closed: %+v, want Hup", got)
	}
}

// TestPollerRefuses: the wake-up token, a descriptor added twice, one
// never added, and a wait with no room are errors, not panics.
func TestPollerRefuses(t *testing.T) {
	p := openPoller(t)
	r, _ := pipe(t)
	if err := p.Add(r, In, wakeToken); !errors.Is(err, ErrReservedToken) {
		t.Fatalf("add with the wake token: %v", err)
	}
	if err := p.Add(r, In, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Modify(r, In, wakeToken); !errors.Is(err, ErrReservedToken) {
		t.Fatalf("modify to the wake token: %v", err)
	}
	if err := p.Add(r, In, 2); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second add: %v, want EEXIST", err)
	}
	_, w := pipe(t)
	if err := p.Delete(w); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("delete of a descriptor never added: %v, want ENOENT", err)
	}
	if _, err := p.Wait(nil, 0); err == nil {
		t.Fatal("wait with no room for events: no error")
	}
}

// TestExclusiveCannotBeModified: the kernel refuses to modify an
// exclusive registration; the loops delete and add it instead.
func TestExclusiveCannotBeModified(t *testing.T) {
	p := openPoller(t)
	r, _ := pipe(t)
	if err := p.Add(r, In|Exclusive, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Modify(r, In, 1); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("modify of an exclusive registration: %v, want EINVAL", err)
	}
	if err := p.Delete(r); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(r, In|Exclusive, 1); err != nil {
		t.Fatalf("add again after delete: %v", err)
	}
}

// TestWakeEndsWaitAndIsNotReported: a Wake from another goroutine ends a
// Wait that would block forever; it is never reported as an event, and
// events ready at the same time still are.
func TestWakeEndsWaitAndIsNotReported(t *testing.T) {
	p := openPoller(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := p.Wake(); err != nil {
			t.Errorf("wake: %v", err)
		}
	})
	if got := wait(t, p, -1); len(got) != 0 {
		t.Fatalf("woken: %+v, want no events", got)
	}
	wg.Wait()

	// Woken with a descriptor ready: only the descriptor is reported.
	r, w := pipe(t)
	if err := p.Add(r, In, 5); err != nil {
		t.Fatal(err)
	}
	Write(w, []byte("x"))
	for range 3 {
		if err := p.Wake(); err != nil { // one write; the others are no-ops
			t.Fatal(err)
		}
	}
	got := wait(t, p, waitFor)
	if len(got) != 1 || got[0].Token() != 5 {
		t.Fatalf("woken with a readable pipe: %+v, want the pipe only", got)
	}
	// The wake-up was consumed: with the pipe drained, nothing is ready.
	var b [1]byte
	Read(r, b[:])
	if got := wait(t, p, 0); len(got) != 0 {
		t.Fatalf("after the wake-up was consumed: %+v, want nothing", got)
	}
	// And the next Wake writes again.
	wg.Go(func() { p.Wake() })
	if got := wait(t, p, -1); len(got) != 0 {
		t.Fatalf("second wake-up: %+v", got)
	}
}

// TestWaitTimesOut: a Wait with a timeout and nothing ready returns no
// events, no sooner than the timeout.
func TestWaitTimesOut(t *testing.T) {
	p := openPoller(t)
	start := time.Now()
	if got := wait(t, p, 1500*time.Microsecond); len(got) != 0 {
		t.Fatalf("%+v, want none", got)
	}
	if d := time.Since(start); d < time.Millisecond {
		t.Fatalf("returned after %v, before its timeout", d)
	}
}

// TestClose: Wake and Close after Close report ErrClosed and touch no
// descriptor (whose number may belong to another file by then).
func TestClose(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	ep := p.ep
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if err := p.Wake(); !errors.Is(err, ErrClosed) {
		t.Fatalf("wake after close: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(ep), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("epoll descriptor after close: %v, want EBADF", err)
	}
}

// TestWaitAllocatesNothing: the per-event path of a loop (Wait, Read,
// Write, Modify, Wake) makes no allocation.
func TestWaitAllocatesNothing(t *testing.T) {
	p := openPoller(t)
	r, w := pipe(t)
	if err := p.Add(r, In, 3); err != nil {
		t.Fatal(err)
	}
	events := make([]Event, 4)
	buf := make([]byte, 16)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := Write(w, msg); err != nil {
			t.Fatal(err)
		}
		p.Wake()
		n, err := p.Wait(events, waitFor)
		if err != nil || n != 1 || events[0].Token() != 3 {
			t.Fatalf("wait: %d events, %v", n, err)
		}
		if n, err := Read(r, buf); n != len(msg) || err != nil {
			t.Fatalf("read: %d, %v", n, err)
		}
		if _, err := Read(r, buf); err != ErrAgain {
			t.Fatalf("read of an empty pipe: %v, want ErrAgain", err)
		}
		if err := p.Modify(r, In, 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round, want 0", allocs)
	}
}
