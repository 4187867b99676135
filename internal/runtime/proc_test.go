package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// startTree starts, in a process group of its own, a shell whose tree holds a child, a
// grandchild (through a subshell) and a child that leaves for a session of its own, and
// waits until all are running. It returns the shell's pid (the group's id).
func startTree(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", `sleep 1000 & (sleep 1000 & wait) & setsid sleep 1000 & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
	})
	// sh, sleep, the subshell and its sleep are in the group; setsid's sleep is not.
	testenv.Eventually(t, 10*time.Second, func() error {
		m, err := groupMembers(pid)
		if err != nil {
			return err
		}
		if len(m) != 4 {
			return fmt.Errorf("%d processes in the group, want 4", len(m))
		}
		// Until setsid has run, its process is a fifth member: the tree is settled
		// once the shell has a child outside the group.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(f)
			if st, err := readStat(c); err == nil && st.PGRP != pid {
				return nil
			}
		}
		return errors.New("no child has left the group yet")
	})
	return pid
}

func pids(m []procStat) []int {
	var out []int
	for _, p := range m {
		out = append(out, p.PID)
	}
	slices.Sort(out)
	return out
}

// TestTreeMembersMatchesGroupScan: walking the tree finds exactly the processes the
// host scan finds in the group (not the one that left it, nor anything else).
func TestTreeMembersMatchesGroupScan(t *testing.T) {
	pid := startTree(t)
	want, err := groupMembers(pid)
	if err != nil {
		t.Fatal(err)
	}
	got, err := treeMembers(pid, pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pids(got), pids(want)) {
		t.Fatalf("tree walk found %v, the group scan %v", pids(got), pids(want))
	}
	if got, err := instanceMembers(pid, pid); err != nil || len(got) != 4 {
		t.Fatalf("instanceMembers = %v, %v; want the 4 members", pids(got), err)
	}
	// A leader that has exited leaves nothing to walk from: no error, no members.
	if got, err := treeMembers(1<<22+1, 1<<22+1); err != nil || len(got) != 0 {
		t.Fatalf("treeMembers of a pid that does not exist = %v, %v", got, err)
	}
	// The wrong group: the leader is not a member, nothing is found.
	if got, err := treeMembers(pid, pid+1<<22); err != nil || len(got) != 0 {
		t.Fatalf("treeMembers with a foreign pgid = %v, %v", pids(got), err)
	}
}

// BenchmarkStatsMembers compares the host scan with the tree walk for a 4-process
// group; the scan's cost grows with every process on the host.
func BenchmarkStatsMembers(b *testing.B) {
	pid := startTree(b)
	b.Run("group_scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := groupMembers(pid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tree_walk", func(b *testing.B) {
		for b.Loop() {
			if _, err := treeMembers(pid, pid); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// waitingThreads counts this process's threads blocked in a wait for a child (kernel
// wait channel do_wait: waitid, wait4).
func waitingThreads(t *testing.T) int {
	t.Helper()
	tids, err := readDirNames("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tid := range tids {
		if b, err := os.ReadFile("/proc/self/task/" + tid + "/wchan"); err == nil && string(b) == "do_wait" {
			n++
		}
	}
	return n
}

// TestRunningInstancesHoldNoThread: waiting for an instance's end holds no OS thread
// (a blocked waitid per instance did), and the end is still seen and reported.
func TestRunningInstancesHoldNoThread(t *testing.T) {
	const n = 30
	l := newLocal(t, Options{})
	dir := t.TempDir()
	var infos []Info
	for i := range n {
		info, err := l.Start(context.Background(), Spec{ID: fmt.Sprintf("s-%d", i), Dir: dir, Command: "sleep 1000"})
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	// Instances that have not ended hold no thread in waitid: a count of the
	// threads in a child wait, not of all threads, which Go's runtime adds as
	// blocking system calls need them (more on a loaded machine).
	if w := waitingThreads(t); w != 0 {
		t.Fatalf("%d instances running: %d threads blocked waiting for a child", n, w)
	}
	if err := syscall.Kill(infos[3].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if x := nextExit(t, l); x.ID != "s-3" || x.Signal != "SIGKILL" || x.Stopped {
		t.Fatalf("exit = %+v, want s-3 killed by SIGKILL", x)
	}
}

// TestCgroupPerInstance: where the host lets this process make cgroups, an instance
// runs in one of its own; Stats counts the process that left its group, and the end
// takes that process and the cgroup with it.
func TestCgroupPerInstance(t *testing.T) {
	l := newLocal(t, Options{})
	if l.cg == nil {
		t.Skip("this host does not let the test make cgroup v2 directories (no cgroup2 mount, or no permission)")
	}
	info, err := l.Start(context.Background(), Spec{ID: "cg", Dir: t.TempDir(),
		Command: `setsid sleep 1000 & exec sleep 1000`})
	if err != nil {
		t.Fatal(err)
	}
	cg := l.get("cg").cgroup
	if cg == "" || !strings.HasPrefix(cg, l.cg.dir+"/") {
		t.Fatalf("instance cgroup %q, want one under %s", cg, l.cg.dir)
	}
	var escaped int
	testenv.Eventually(t, 10*time.Second, func() error {
		members, err := cgroupMembers(cg)
		if err != nil {
			return err
		}
		if len(members) != 2 {
			return fmt.Errorf("%d processes in the cgroup, want 2", len(members))
		}
		for _, m := range members {
			if m.PGRP != info.PGID {
				escaped = m.PID
				return nil
			}
		}
		return fmt.Errorf("no member outside the group %d yet: %+v", info.PGID, members)
	})
	if st, err := l.Stats("cg"); err != nil || st.Processes != 2 {
		t.Fatalf("Stats = %+v, %v; want 2 processes (one outside the group)", st, err)
	}
	if err := l.Stop(context.Background(), "cg"); err != nil {
		t.Fatal(err)
	}
	if x := nextExit(t, l); x.ID != "cg" || !x.Stopped {
		t.Fatalf("exit = %+v", x)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s still there after the exit: %v", cg, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st, err := readStat(escaped); err == nil && st.alive() {
			return fmt.Errorf("process %d that left the group still runs", escaped)
		}
		return nil
	})
}

// TestCleanLeftoversRemovesCgroups: a cgroup a crashed run left, with a process still in
// it, is emptied and removed; the cgroup of a running instance is not touched.
func TestCleanLeftoversRemovesCgroups(t *testing.T) {
	l := newLocal(t, Options{})
	if l.cg == nil {
		t.Skip("this host does not let the test make cgroup v2 directories (no cgroup2 mount, or no permission)")
	}
	if _, err := l.Start(context.Background(), Spec{ID: "live", Dir: t.TempDir(), Command: "sleep 1000"}); err != nil {
		t.Fatal(err)
	}
	left, f, err := l.cg.create("old")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	if err := l.CleanLeftovers(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
		waited <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover cgroup's process still runs")
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("leftover cgroup %s still there: %v", left, err)
	}
	if cg := l.get("live").cgroup; cg == "" {
		t.Fatal("running instance has no cgroup")
	} else if _, err := os.Stat(cg); err != nil {
		t.Fatalf("running instance's cgroup: %v", err)
	}
}
