package runtime

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pidWatch tells when one process ends, through a pidfd on Go's poller (no thread is
// held while it waits), so a pid reused after the end can never be mistaken for it.
type pidWatch struct {
	f *os.File
}

// watchPid opens a pidfd for pid, checking that the process is the one that started at
// startTicks (field 22 of /proc/<pid>/stat).
func watchPid(pid int, startTicks uint64) (*pidWatch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Checked after the open: if the start time still matches, the pidfd is that process's.
	if st, err := readStat(pid); err != nil || st.StartTime != startTicks {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d: not the process recorded (gone or reused)", pid)
	}
	return &pidWatch{f: os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(pid))}, nil
}

// wait returns nil once the process has exited, or an error if cancel was called.
func (w *pidWatch) wait() error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0 // else wait for the poller to see the pidfd readable
	})
}

// cancel makes wait return an error.
func (w *pidWatch) cancel() { w.f.SetReadDeadline(time.Unix(1, 0)) }

// signal sends sig to the process unless it has been reaped.
func (w *pidWatch) signal(sig syscall.Signal) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	return serr
}

// reap reaps the exited process if it is a child of this process (through the pidfd,
// so no other child can be reaped instead); otherwise it does nothing.
func (w *pidWatch) reap() {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		var info unix.Siginfo
		unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
	})
}

func (w *pidWatch) close() { w.f.Close() }
