package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClientRTTSlowLink: two clients in network namespaces of a lab, one
// on a plain link and one whose link to the balancer is slowed (a tbf
// qdisc kept full by a bulk upload, so that every packet it sends waits
// in the queue, as over a long distance). The round-trip time the
// balancer records for the slow client's requests follows the delay that
// client's own TCP handshakes measure, the near client's stays far below
// it, and Status's per-listener figures tell them apart. Run on both
// paths: the fast path and net/http.
func TestClientRTTSlowLink(t *testing.T) {
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skipf("needs tc (iproute2): %v", err)
	}
	for _, path := range []string{"fast", "nethttp"} {
		t.Run(path, func(t *testing.T) { testClientRTTSlowLink(t, path == "nethttp") })
	}
}

func testClientRTTSlowLink(t *testing.T, noFast bool) {
	lab := testenv.NewLab(t, "near", "far")
	ctx := testenv.Context(t, 90*time.Second)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })

	// The balancer runs in this process, its listeners in the lab's own
	// namespace (one per client, so the per-listener figures split them);
	// it reaches the target on this namespace's loopback.
	socks := map[string]*net.TCPListener{}
	for _, name := range []string{"near", "far"} {
		ln, err := lab.Listen("", testenv.LabIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		socks[name] = ln
	}
	obs := &recObserver{}
	cfg := baseConfig(be.addr)
	cfg.Listeners = []Listener{{Name: "near", Addr: socks["near"].Addr().String()}, {Name: "far", Addr: socks["far"].Addr().String()}}
	cfg.Limits.DisableFastPath = noFast
	cfg.Observer = obs
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{"near": socks["near"].Addr().String(), "far": socks["far"].Addr().String()}
	if err := b.ListenOn(socks); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// Slow the far host's way out: 1 Mbit/s with a queue of about 150 ms,
	// kept full by a bulk upload from the far host to a sink in the lab.
	// TCP's own congestion control keeps the queue full (a standing
	// queue, as in a bufferbloated home link), from the kernel's send
	// buffer: a pause of the test's goroutines does not drain it.
	if out, err := lab.CommandContext(ctx, "far", "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
		"rate", "1mbit", "burst", "4kb", "latency", "150ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	sinkLn, err := lab.Listen("", testenv.LabIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := lab.Dialer("far")(ctx, "tcp", sinkLn.Addr().String())
	if err != nil {
		sinkLn.Close()
		t.Fatal(err)
	}
	down, err := sinkLn.Accept()
	sinkLn.Close()
	if err != nil {
		up.Close()
		t.Fatal(err)
	}
	// Send and receive buffers of 4 MiB, 32 s of the link: TCP sizes its
	// own from the small window of a slow link (a second or two of data),
	// which a loaded machine that does not run the writer, or the sink's
	// reader, for that long drains, and the queue with it (seen at a load
	// average of 30). The FORCE options pass the system's wmem_max and
	// rmem_max (the test runs as root: it makes a lab).
	for _, b := range []struct {
		c   net.Conn
		opt int
	}{{up, unix.SO_SNDBUFFORCE}, {down, unix.SO_RCVBUFFORCE}} {
		if err := forceBuffer(b.c, b.opt, 4<<20); err != nil {
			up.Close()
			down.Close()
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, down) // until the upload is closed
	}()
	go func() {
		defer wg.Done()
		chunk := make([]byte, 64<<10)
		for {
			if _, err := up.Write(chunk); err != nil {
				return // closed by the cleanup
			}
		}
	}()
	t.Cleanup(func() { up.Close(); down.Close(); wg.Wait() })

	// The delay each client's own handshakes measure (a SYN waits in the
	// same queue): the median of several, leaving out those whose SYN
	// found the queue full (its retry waits a second; the kernel leaves
	// retried segments out of its estimate too).
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	handshakes := func(host string) []time.Duration {
		var ds []time.Duration
		dial := lab.Dialer(host)
		for range 9 {
			t0 := time.Now()
			c, err := dial(ctx, "tcp", addr[host])
			if err != nil {
				t.Fatalf("%s: dial: %v", host, err)
			}
			if d := time.Since(t0); d < 500*time.Millisecond {
				ds = append(ds, d)
			}
			c.Close()
		}
		return ds
	}
	handshake := func(host string) time.Duration {
		if ds := handshakes(host); len(ds) > 0 {
			return median(ds)
		}
		return 0
	}
	// Wait until the queue is full: the far handshake takes at least
	// ten times the near one.
	near0 := handshake("near")
	testenv.Eventually(t, 20*time.Second, func() error {
		if hs := handshake("far"); hs <= 10*near0 || hs <= 5*time.Millisecond {
			return fmt.Errorf("the far link's queue is not full: handshakes near %v, far %v", near0, hs)
		}
		return nil
	})
	// The far handshakes measured before and after its requests bracket
	// the queue's delay while they ran.
	farHSs := handshakes("far")

	// Each client sends its requests on one keep-alive connection.
	const n = 15
	for _, host := range []string{"near", "far"} {
		tr := lab.Transport(host)
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		for range n {
			resp, err := c.Get("http://" + addr[host] + "/" + host)
			if err != nil {
				t.Fatalf("%s: %v", host, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %s", host, resp.Status)
			}
		}
		tr.CloseIdleConnections()
	}
	farHSs = append(farHSs, handshakes("far")...)
	if len(farHSs) < 5 {
		t.Fatalf("most far handshakes were retried: %v", farHSs)
	}
	farHS := median(farHSs)
	waitFor(t, 10*time.Second, "every request recorded", func() bool { return len(obs.all()) == 2*n })
	rtts := map[string][]time.Duration{}
	for _, r := range obs.all() {
		rtts[r.Path[1:]] = append(rtts[r.Path[1:]], r.RTT)
	}
	nearRTT, farRTT := median(rtts["near"]), median(rtts["far"])
	t.Logf("handshakes: near %v, far %v; balancer's RTT medians: near %v, far %v", near0, farHS, nearRTT, farRTT)
	if len(rtts["near"]) != n || len(rtts["far"]) != n || nearRTT <= 0 {
		t.Fatalf("records: %v", rtts)
	}
	// The far client's round trip is the queue's delay, which its own
	// handshakes measured: within half and twice of it (the queue's fill
	// varies), and far above the near one's.
	if farRTT < farHS/2 || farRTT > 2*farHS {
		t.Errorf("far RTT %v, handshake %v", farRTT, farHS)
	}
	if nearRTT > farHS/5 || farRTT < 10*nearRTT {
		t.Errorf("near RTT %v against far RTT %v (far handshake %v)", nearRTT, farRTT, farHS)
	}
	// Status splits them by listener.
	var nearL, farL float64
	for _, l := range b.Status().Listeners {
		if l.Timing == nil || l.Timing.RTTSamples != n {
			t.Fatalf("listener %s timing %+v", l.Name, l.Timing)
		}
		switch l.Name {
		case "near":
			nearL = l.Timing.RTTP50MS
		case "far":
			farL = l.Timing.RTTP50MS
		}
	}
	// Status's p50 comes from 1-2-5 buckets, interpolated inside one:
	// within one step (a factor 2.5) of the records' exact median.
	exact := float64(farRTT.Microseconds()) / 1000
	if farL < 10*nearL || farL < exact/2.5 || farL > exact*2.5 {
		t.Errorf("status p50 RTT: near %v ms, far %v ms (records' median %v, far handshake %v)", nearL, farL, farRTT, farHS)
	}
}

// forceBuffer sets c's buffer opt (SO_SNDBUFFORCE, SO_RCVBUFFORCE) to n
// bytes.
func forceBuffer(c net.Conn, opt, n int) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, n)
	}); err != nil {
		return err
	}
	return serr
}
