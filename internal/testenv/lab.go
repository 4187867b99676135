package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The lab's addresses: the bridge (the lab's own namespace) is LabIP, the
// i-th host (from 0) is 10.77.0.(11+i).
const (
	LabIP     = "10.77.0.1"
	labPrefix = "10.77.0."
	labFirst  = 11
	labBridge = "lab0"
	// LabMaxHosts is how many hosts one lab holds.
	LabMaxHosts = 200
)

// labHostName is a host's name: it names a network namespace file and
// appears in commands, so only what a fleet's host names allow.
var labHostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// Lab is a private network of hosts for end-to-end tests of a fleet, made
// of Linux namespaces that nothing outside the lab can see:
//
//   - the lab: a network and mount namespace of its own (`unshare --net
//     --mount`), held by one process (the holder), with lo up and a
//     bridge lab0 at LabIP/24. Processes started "in the lab" (host "")
//     run here: a fleet's server and its CLI.
//   - one network namespace per host, made with `ip netns add` inside the
//     lab's mount namespace (so its name lives in the lab's private /run
//     and cannot collide with another test's), joined to the bridge by a
//     veth pair (eth0 on the host, vethN on the bridge) with lo up and
//     its own address (Host.IP).
//
// Everything is plain Linux routing on one bridge: no iptables rule, no
// route outside the lab, so labs of concurrent tests never meet.
//
// The test drives the lab from outside rather than re-executing itself
// inside it: programs are started through `nsenter --net=FILE`, which
// enters only the network namespace and then execs the program, so a
// Process is the program itself (its pid, signals, exit code and process
// group are the program's, as with Start) and sees the test's file system
// and working directory; the test's own goroutines, cleanups and leak
// checks stay in its own namespaces. Go code of the test reaches into the
// lab with Dialer (a socket made on a thread moved into a namespace for
// that one call).
//
// Close (a test's Cleanup, see NewLab) ends every process in any of the
// lab's namespaces, including those that left their process group (an
// agent's instance shims), then the holder, and reports a process that
// outlives it. The holder also ends when the test process dies (its stdin
// is a pipe the test holds), so a test killed before its cleanups leaves
// no holder behind; processes it started in the lab are then not swept.
type Lab struct {
	holder *Process
	stdin  *os.File // the write end of the holder's stdin; closing it ends the holder
	pid    int      // the holder's pid
	netns  *os.File // the lab's network namespace
	mnt    *os.File // the lab's mount namespace, held until Close's sweep ends
	root   *os.File // the test's own network namespace, to return to after a dial
	hosts  []*LabHost
	byName map[string]*LabHost
	nsIDs  map[nsID]string // every namespace of the lab, to what it belongs

	mu       sync.RWMutex // held for reading by a dial, for writing by Close
	closed   bool
	closeErr error
}

// LabHost is one host of a Lab. Its fields are read-only.
type LabHost struct {
	Name  string // the name given to NewLab
	IP    string // its address on the lab's bridge, such as 10.77.0.11
	link  string // the bridge side of its veth pair
	netns *os.File
	path  string // its namespace file, as the lab's holder sees it
}

// nsID identifies a namespace (the device and inode of its nsfs file).
type nsID struct{ dev, ino uint64 }

// NewLab makes a lab with the named hosts for t and closes it when the
// test ends, failing the test if a process outlives the lab. It skips the
// test without root or without unshare, nsenter and ip, except under CI
// (CI set), where the tools are installed (.ci/run) and a missing one is a
// failure.
func NewLab(t testing.TB, hosts ...string) *Lab {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("the lab needs root: network and mount namespaces")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("the lab needs %s (apt-get install util-linux iproute2): %v", tool, err)
		}
	}
	l, err := OpenLab(Context(t, 30*time.Second), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// OpenLab makes a lab with the named hosts (see Lab); ctx bounds the
// setup. The caller must Close it. Host names are lowercase letters,
// digits, '.' and '-', at most 63, each used once; at most LabMaxHosts.
func OpenLab(ctx context.Context, hosts ...string) (*Lab, error) {
	if len(hosts) > LabMaxHosts {
		return nil, fmt.Errorf("lab: %d hosts, at most %d", len(hosts), LabMaxHosts)
	}
	l := &Lab{byName: make(map[string]*LabHost), nsIDs: make(map[nsID]string)}
	var script strings.Builder
	script.WriteString(`set -e
mount -t tmpfs -o mode=0755 lab-run /run
ip link set lo up
ip link add ` + labBridge + ` type bridge
ip addr add ` + LabIP + `/24 dev ` + labBridge + `
ip link set ` + labBridge + ` up
`)
	for i, name := range hosts {
		if !labHostName.MatchString(name) {
			return nil, fmt.Errorf("lab: host name %q: lowercase letters, digits, '.' and '-', 1 to 63", name)
		}
		if l.byName[name] != nil {
			return nil, fmt.Errorf("lab: host %q given twice", name)
		}
		h := &LabHost{Name: name, IP: labPrefix + strconv.Itoa(labFirst+i), link: "veth" + strconv.Itoa(i)}
		l.hosts = append(l.hosts, h)
		l.byName[name] = h
		fmt.Fprintf(&script, `ip netns add %[1]s
ip link add %[2]s type veth peer name eth0 netns %[1]s
ip link set %[2]s master %[3]s up
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[4]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s route add default via %[5]s
`, name, h.link, labBridge, h.IP, LabIP)
	}
	// The holder waits on its stdin: EOF (Close, or the test process's
	// death) ends it.
	script.WriteString("echo lab ready\nexec cat >/dev/null\n")

	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", script.String())
	cmd.Stdin = r
	p, err := StartProcess(cmd)
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.holder, l.stdin, l.pid = p, w, p.Cmd.Process.Pid
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`^lab ready$`)); err != nil {
		l.Close()
		return nil, fmt.Errorf("lab: setup: %w\n%s", err, p.Output())
	}
	if err := l.open(); err != nil {
		l.Close()
		return nil, fmt.Errorf("lab: %w", err)
	}
	return l, nil
}

// open takes a handle of every namespace of the lab and records their
// identities for Close's sweep.
func (l *Lab) open() error {
	var err error
	if l.root, err = os.Open("/proc/thread-self/ns/net"); err != nil {
		return err
	}
	if l.netns, err = os.Open(l.nsPath("")); err != nil {
		return err
	}
	if err := l.record(l.netns, "the lab's network namespace"); err != nil {
		return err
	}
	// The handle is kept until Close's sweep is over: a namespace's
	// identity (its inode) is free for another namespace once nothing
	// holds it, and the holder is one of the first processes the sweep
	// kills. Without the handle, a lab that another test process makes
	// meanwhile can get the number, and the sweep, still going, kills its
	// processes as this lab's (seen as "lab: setup: process exited (exit
	// status 137)" in one package while another package's lab closed).
	if l.mnt, err = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", l.pid)); err != nil {
		return err
	}
	if err := l.record(l.mnt, "the lab's mount namespace"); err != nil {
		return err
	}
	for _, h := range l.hosts {
		h.path = l.nsPath(h.Name)
		if h.netns, err = os.Open(h.path); err != nil {
			return err
		}
		if err := l.record(h.netns, "host "+h.Name+"'s network namespace"); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) record(f *os.File, what string) error {
	id, err := fileNS(f)
	if err != nil {
		return err
	}
	l.nsIDs[id] = what
	return nil
}

func fileNS(f *os.File) (nsID, error) {
	fi, err := f.Stat()
	if err != nil {
		return nsID{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return nsID{uint64(st.Dev), st.Ino}, nil
}

// nsPath is the network namespace file of host ("" for the lab itself),
// reached through the holder's view of the file system.
func (l *Lab) nsPath(host string) string {
	if host == "" {
		return fmt.Sprintf("/proc/%d/ns/net", l.pid)
	}
	return fmt.Sprintf("/proc/%d/root/run/netns/%s", l.pid, host)
}

// Hosts returns the lab's hosts in the order given to NewLab.
func (l *Lab) Hosts() []*LabHost { return append([]*LabHost(nil), l.hosts...) }

// Host returns the named host; it panics on a name the lab lacks (a
// mistake in the test).
func (l *Lab) Host(name string) *LabHost {
	h := l.byName[name]
	if h == nil {
		panic(fmt.Sprintf("testenv: the lab has no host %q", name))
	}
	return h
}

// Command returns a command that runs name with args on host (its network
// namespace; "" is the lab's own namespace), with the test's file system,
// environment and working directory unless the caller sets them. Start it
// with StartCmd or StartProcess, or run it to completion.
func (l *Lab) Command(host, name string, args ...string) *exec.Cmd {
	return l.CommandContext(context.Background(), host, name, args...)
}

// CommandContext is Command with a context that kills the command (see
// exec.CommandContext).
func (l *Lab) CommandContext(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	path := l.nsPath("")
	if host != "" {
		path = l.Host(host).path
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "--", name}, args...)...)
}

// Start runs name with args on host ("" for the lab) as a Process of t:
// see Command and StartCmd.
func (l *Lab) Start(t testing.TB, host, name string, args ...string) *Process {
	t.Helper()
	return StartCmd(t, l.Command(host, name, args...))
}

// Dialer returns a dial function that connects from host ("" for the lab
// itself), for an http.Transport's DialContext or a TLS dialer.
func (l *Lab) Dialer(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	ns := l.netns
	if host != "" {
		ns = l.Host(host).netns
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return l.dialIn(ctx, ns, network, addr)
	}
}

// Transport returns an HTTP transport whose connections are made from
// host ("" for the lab). The caller closes its idle connections when done.
func (l *Lab) Transport(host string) *http.Transport {
	return &http.Transport{
		DialContext:         l.Dialer(host),
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
}

// dialIn dials on an OS thread moved into the namespace ns: the socket
// belongs to the namespace it was made in, wherever it is used later.
func (l *Lab) dialIn(ctx context.Context, ns *os.File, network, addr string) (net.Conn, error) {
	return inNamespace(l, ns, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
}

// Listen opens a TCP listening socket on host ("" for the lab itself) at
// addr (such as LabIP+":0"), for a server that the test runs in its own
// process but that must be reached from the lab's hosts: the socket
// belongs to the namespace it was made in, so it accepts there while
// the test's goroutines serve it. The caller closes it.
func (l *Lab) Listen(host, addr string) (*net.TCPListener, error) {
	ns := l.netns
	if host != "" {
		ns = l.Host(host).netns
	}
	return inNamespace(l, ns, func() (*net.TCPListener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	})
}

// inNamespace runs f on an OS thread moved into the namespace ns, for
// the sockets it makes. The thread then returns to the test's namespace;
// if it cannot, it stays locked and Go ends it with its goroutine.
func inNamespace[T any](l *Lab, ns *os.File, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	// The handles stay open until f has returned (Close waits).
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		var zero T
		return zero, errors.New("lab: closed")
	}
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("enter the lab's network namespace: %w", err)}
			return // locked: the thread is ended
		}
		v, err := f()
		if unix.Setns(int(l.root.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{v, err}
	}()
	r := <-done
	return r.v, r.err
}

// Cut takes host's link to the bridge down (its bridge side), as a pulled
// cable: packets to and from the host are dropped, its connections hang
// rather than being reset, and its processes keep running.
func (l *Lab) Cut(ctx context.Context, host string) error {
	return l.link(ctx, host, "down")
}

// Restore brings host's link up again after Cut, and forgets the
// neighbour (ARP) entries that the cut left unresolved on both sides: the
// lab's and the other hosts' entries for the host, and all of the host's.
// Without that, a connection tried during the cut leaves an entry that
// answers "no route to host" for a while after the link is back, which
// a real network shows too but which would only add noise to a test.
func (l *Lab) Restore(ctx context.Context, host string) error {
	return l.link(ctx, host, "up")
}

func (l *Lab) link(ctx context.Context, host, state string) error {
	h := l.Host(host)
	script := "set -e\nip link set " + h.link + " " + state + "\n"
	if state == "up" {
		script += "ip neigh flush to " + h.IP + "\nip -n " + h.Name + " neigh flush all\n"
		for _, o := range l.hosts {
			if o != h {
				script += "ip -n " + o.Name + " neigh flush to " + h.IP + "\n"
			}
		}
	}
	// The lab's mount namespace too: `ip -n` finds the hosts in its /run.
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(l.pid), "--net", "--mount", "--", "sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: link of %s %s: %v: %s", host, state, err, out)
	}
	return nil
}

// Close ends every process in any namespace of the lab (SIGKILL, swept
// until none is left, at most 20 seconds), then the holder, and releases
// the test's handles of the namespaces, after which nothing holds them.
// It first waits for dials in progress (bound them with a context); a
// dial after Close fails.
// It reports the processes that outlived the sweep. Calling it again
// returns the first result.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	var errs []error
	if len(l.nsIDs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := WaitFor(ctx, func() error {
			left := l.Processes()
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			if len(left) > 0 {
				return fmt.Errorf("processes left in the lab: %v", left)
			}
			return nil
		})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	}
	if l.stdin != nil {
		l.stdin.Close()
	}
	if l.holder != nil {
		l.holder.Close()
	}
	for _, f := range []*os.File{l.netns, l.mnt, l.root} {
		if f != nil {
			f.Close()
		}
	}
	for _, h := range l.hosts {
		if h.netns != nil {
			h.netns.Close()
		}
	}
	l.closeErr = errors.Join(errs...)
	return l.closeErr
}

// Processes returns the pids of the processes (thread group leaders, not
// this one) in any of the lab's namespaces: the holder, and everything
// started in the lab or on a host, with their children.
func (l *Lab) Processes() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, kind := range []string{"net", "mnt"} {
			var st syscall.Stat_t
			// A process that has just exited has no namespaces left.
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st) != nil {
				continue
			}
			if _, ok := l.nsIDs[nsID{uint64(st.Dev), st.Ino}]; ok {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
