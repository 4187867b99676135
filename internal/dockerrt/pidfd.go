package dockerrt

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// An engine learns that a container ended a few hundred milliseconds after
// its process did (it tears the container down first); a balancer that
// keeps sending requests to the dead instance meanwhile gets refused
// connections faster than its retry budget allows retries. So when the
// engine runs in this PID namespace (the container's process is ours to
// see, checked through its cgroup), the Engine also watches the process
// through a pidfd and reads its exit status while it is a zombie, before
// its parent (the engine's shim) reaps it. When that read loses the race,
// the engine's own report is awaited as before.

// earlyExit is a container process's end seen through its pidfd.
type earlyExit struct {
	code   int
	signal syscall.Signal
}

// watchProcess opens a pidfd on the container's main process when pid is
// that container's (its cgroup names the container ID) and returns a
// channel that delivers its exit status once, if the zombie could be read,
// and is closed when the watch ends. It returns nil when the process
// cannot be watched (another PID namespace, already gone). onEnd is called
// once the process has ended, whether its status could be read or not.
func watchProcess(pid int, cid string, stop <-chan struct{}, onEnd func()) <-chan earlyExit {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(pid))
	// Checked after the open: the pidfd then names that process for good.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err != nil || !strings.Contains(string(b), cid) {
		f.Close()
		return nil
	}
	ch := make(chan earlyExit, 1)
	go func() {
		defer close(ch)
		defer f.Close()
		// A blocking poll on a thread of its own wakes as the process ends,
		// sooner than Go's poller would hand the event over: the read of
		// the zombie races the shim's reaping of it. The timeout lets a
		// stop end the loop.
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := unix.Poll(fds, 500)
			if err != nil && err != unix.EINTR {
				return
			}
			if n > 0 {
				break
			}
		}
		ws, ok := zombieStatus(pid)
		onEnd()
		if ok {
			e := earlyExit{code: ws.ExitStatus()}
			if ws.Signaled() {
				e.code, e.signal = -1, ws.Signal()
			}
			ch <- e
		}
	}()
	return ch
}

// zombieStatus reads the wait status of pid from /proc/<pid>/stat while
// it is a zombie (field 52, exit_code).
func zombieStatus(pid int) (unix.WaitStatus, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 50 || f[0] != "Z" {
		return 0, false
	}
	v, err := strconv.Atoi(f[49])
	if err != nil {
		return 0, false
	}
	return unix.WaitStatus(v), true
}
