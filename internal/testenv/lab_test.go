package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// labChild is the test binary as a program on a lab host, by
// TESTENV_CHILD mode:
//
//   - listen: serves LAB_ADDR, answering each connection with one line,
//     LAB_GREETING; first starts a "hold" process in a session of its
//     own (outside its process group, as an agent's instance shims are)
//     and prints `listening addr=A netns=INODE held=PID`;
//   - hold: stays until killed;
//   - dial: connects to LAB_ADDR (LAB_TIMEOUT, default 5 s), prints `got LINE` with
//     the line read, exit 0; exit 1 on failure.
func labChild(mode string) {
	switch mode {
	case "listen":
		hold := exec.Command(os.Args[0], "-test.run=^$")
		hold.Env = append(os.Environ(), "TESTENV_CHILD=hold")
		hold.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := hold.Start(); err != nil {
			fmt.Println("hold:", err)
			os.Exit(1)
		}
		ln, err := net.Listen("tcp", os.Getenv("LAB_ADDR"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("listening addr=%s netns=%d held=%d\n", ln.Addr(), st.Ino, hold.Process.Pid)
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintln(c, os.Getenv("LAB_GREETING"))
			c.Close()
		}
	case "hold":
		time.Sleep(time.Hour)
	case "dial":
		timeout, err := time.ParseDuration(os.Getenv("LAB_TIMEOUT"))
		if err != nil {
			timeout = 5 * time.Second
		}
		c, err := net.DialTimeout("tcp", os.Getenv("LAB_ADDR"), timeout)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("got", strings.TrimSpace(line))
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown TESTENV_CHILD %q\n", mode)
		os.Exit(2)
	}
}

var labListening = regexp.MustCompile(`listening addr=(\S+) netns=(\d+) held=(\d+)`)

// startListener starts a "listen" child on host of l, answering greeting.
func startListener(t *testing.T, l *Lab, host, addr, greeting string) (p *Process, netns uint64, held int) {
	t.Helper()
	cmd := l.Command(host, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TESTENV_CHILD=listen", "LAB_ADDR="+addr, "LAB_GREETING="+greeting)
	p = StartCmd(t, cmd)
	m, err := p.WaitForLine(Context(t, 30*time.Second), labListening)
	if err != nil {
		t.Fatal(err)
	}
	netns, _ = strconv.ParseUint(m[2], 10, 64)
	held, _ = strconv.Atoi(m[3])
	return p, netns, held
}

// greet connects from host ("" for the lab) to addr with a short timeout
// and returns the line it reads.
func greet(l *Lab, host, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := l.Dialer(host)(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// dialFrom runs a "dial" child on host to addr, with a connect timeout,
// and returns its exit code and output.
func dialFrom(t *testing.T, l *Lab, host, addr string, timeout time.Duration) (int, string) {
	t.Helper()
	cmd := l.CommandContext(Context(t, 20*time.Second), host, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TESTENV_CHILD=dial", "LAB_ADDR="+addr, "LAB_TIMEOUT="+timeout.String())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestLab: processes on two hosts and in the lab itself run in their own
// network namespaces and reach each other over the bridge; Cut makes a
// host unreachable both ways while its processes keep running; Restore
// brings it back; Close ends every process of the lab, also one that left
// its process group, and leaves none in its namespaces.
func TestLab(t *testing.T) {
	l := NewLab(t, "h1", "h2")
	h1, h2 := l.Host("h1"), l.Host("h2")
	if h1.IP != "10.77.0.11" || h2.IP != "10.77.0.12" || len(l.Hosts()) != 2 {
		t.Fatalf("hosts %+v %+v", h1, h2)
	}
	p1, ns1, held := startListener(t, l, "h1", h1.IP+":7000", "hello from h1")
	if want, err := fileNS(h1.netns); err != nil || ns1 != want.ino {
		t.Fatalf("the process on h1 is in netns %d, want h1's %d (%v)", ns1, want.ino, err)
	}
	_, nsLab, _ := startListener(t, l, "", LabIP+":7001", "hello from the lab")
	if want, err := fileNS(l.netns); err != nil || nsLab != want.ino {
		t.Fatalf("the process in the lab is in netns %d, want %d (%v)", nsLab, want.ino, err)
	}

	for _, from := range []string{"", "h2"} {
		if got, err := greet(l, from, h1.IP+":7000"); err != nil || got != "hello from h1" {
			t.Fatalf("from %q to h1: %q, %v", from, got, err)
		}
	}
	if code, out := dialFrom(t, l, "h2", h1.IP+":7000", 5*time.Second); code != 0 || !strings.Contains(out, "got hello from h1") {
		t.Fatalf("a process on h2 to h1: exit %d: %s", code, out)
	}
	if code, out := dialFrom(t, l, "h1", LabIP+":7001", 5*time.Second); code != 0 || !strings.Contains(out, "got hello from the lab") {
		t.Fatalf("a process on h1 to the lab: exit %d: %s", code, out)
	}
	// The test's own namespace is not the lab's: h1 is not there (a
	// connection may still succeed, to whatever the machine's default
	// route leads to, but not h1's greeting).
	if c, err := net.DialTimeout("tcp", h1.IP+":7000", 500*time.Millisecond); err == nil {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.Contains(line, "hello from h1") {
			t.Fatal("h1 is reachable from outside the lab")
		}
	}

	// A listener of the test's own made in the lab (Listen): processes
	// on the hosts reach it at a lab address.
	ln, err := l.Listen("", LabIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, "hello from the test")
		c.Close()
	}()
	if code, out := dialFrom(t, l, "h2", ln.Addr().String(), 5*time.Second); code != 0 || !strings.Contains(out, "got hello from the test") {
		t.Fatalf("a process on h2 to the test's listener in the lab: exit %d: %s", code, out)
	}
	<-served

	ctx := Context(t, 30*time.Second)
	if err := l.Cut(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"", "h2"} {
		if got, err := greet(l, from, h1.IP+":7000"); err == nil {
			t.Fatalf("from %q to a cut h1: %q", from, got)
		}
	}
	if code, out := dialFrom(t, l, "h1", LabIP+":7001", time.Second); code == 0 {
		t.Fatalf("a process on a cut h1 reached the lab: %s", out)
	}
	if p1.Exited() || !alive(held) {
		t.Fatal("a process on h1 ended when its link was cut")
	}
	if err := l.Restore(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, func() error {
		got, err := greet(l, "h2", h1.IP+":7000")
		if err == nil && got != "hello from h1" {
			return fmt.Errorf("read %q", got)
		}
		return err
	})
	if got, err := greet(l, "", h1.IP+":7000"); err != nil || got != "hello from h1" {
		t.Fatalf("from the lab to a restored h1: %q, %v", got, err)
	}

	if len(l.Processes()) < 4 { // the holder, two listeners, the held process
		t.Fatalf("processes in the lab: %v", l.Processes())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Killed by the sweep (a zombie is in no namespace); reaped by its
	// Process's own goroutine, which may run a moment after Close returns.
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p1.Wait(wctx); err != nil {
		t.Fatalf("the process on h1 outlived the lab: %v", err)
	}
	if alive(held) {
		t.Fatalf("pid %d, out of its process group, outlived the lab", held)
	}
	if left := l.Processes(); len(left) > 0 {
		t.Fatalf("processes left in the lab's namespaces: %v", left)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// TestLabsDoNotMeet: two labs at once use the same addresses and ports,
// and each reaches only its own hosts.
func TestLabsDoNotMeet(t *testing.T) {
	a, b := NewLab(t, "h1"), NewLab(t, "h1")
	addr := a.Host("h1").IP + ":7000"
	startListener(t, a, "h1", addr, "lab a")
	startListener(t, b, "h1", addr, "lab b")
	for l, want := range map[*Lab]string{a: "lab a", b: "lab b"} {
		if got, err := greet(l, "", addr); err != nil || got != want {
			t.Fatalf("%s: %q, %v", want, got, err)
		}
	}
}

func TestOpenLabRefusesBadHosts(t *testing.T) {
	ctx := Context(t, 10*time.Second)
	for _, hosts := range [][]string{{"Bad_Name"}, {"h1", "h1"}, {""}} {
		if l, err := OpenLab(ctx, hosts...); err == nil {
			l.Close()
			t.Fatalf("OpenLab(%q) made a lab", hosts)
		}
	}
	if _, err := OpenLab(ctx, make([]string, LabMaxHosts+1)...); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("too many hosts: %v", err)
	}
}
