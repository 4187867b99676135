package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// labStream is a server's side of the followed configuration (the real
// lbStream and its handler) served on a lab host.
type labStream struct {
	url      string
	lbs      *lbStream
	polls    chan string // the epoch of each call, when it arrives
	returned atomic.Int64
}

func startLabStream(t *testing.T, lab *testenv.Lab, host string) *labStream {
	t.Helper()
	log := testLogger(t).With("server", host)
	bal, err := lb.New(lb.Config{Listeners: []lb.Listener{{Name: "http", Addr: "127.0.0.1:0"}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ls := &labStream{lbs: newLBStream(bal, func(string) *health.Spec { return nil }, log), polls: make(chan string, 64)}
	ls.lbs.open()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- ls.lbs.run(ctx) }()
	ln, err := lab.Listen(host, lab.Host(host).IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ls.polls <- r.URL.Query().Get("epoch"):
		default:
		}
		ls.lbs.serveHTTP(w, r)
		ls.returned.Add(1)
	})}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		srv.Close()
		if err := <-serveDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve %s: %v", host, err)
		}
	})
	ls.url = "http://" + ln.Addr().String()
	return ls
}

func (ls *labStream) epoch() string {
	ls.lbs.mu.Lock()
	defer ls.lbs.mu.Unlock()
	return ls.lbs.epoch
}

// TestLBNodeLeavesSilentServer: a balancer node long-polls server a; a
// is cut off by a partition that drops every packet (the connection
// stays open). The node gives up on a, which acknowledges nothing, and
// follows server b while a's long poll still waits (lbPollWait, 25 s):
// its connection's keep-alive, TCP_USER_TIMEOUT and dial bounds
// (fleetconn.go, 12 s), not its 40 s request timeout. Real sockets in a lab, a real nftables
// partition.
func TestLBNodeLeavesSilentServer(t *testing.T) {
	lab := testenv.NewLab(t, "a", "b")
	ctx := testenv.Context(t, 2*time.Minute)
	a := startLabStream(t, lab, "a")
	b := startLabStream(t, lab, "b")

	log := testLogger(t).With("node", "n1")
	nb, err := lb.New(lb.Config{Listeners: []lb.Listener{{Name: "http", Addr: "127.0.0.1:0"}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f := &lbFollower{log: log, state: filepath.Join(t.TempDir(), LBStateFile), b: nb, cfg: normalLBConfig(api.LBConfig{}),
		servers: newServerList([]string{a.url, b.url}), client: &http.Client{Transport: fleetTransport(nil, lab.Dialer(""))}}
	fctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.followServers(fctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// The node takes a's snapshot, then waits in a's long poll.
	for polls := 0; polls < 2; {
		select {
		case e := <-a.polls:
			if polls == 1 && e != a.epoch() {
				t.Fatalf("second call to a with epoch %q, want a's %q", e, a.epoch())
			}
			polls++
		case <-ctx.Done():
			t.Fatal("the node did not long-poll server a")
		}
	}
	if e, _ := f.Following(); e != a.epoch() {
		t.Fatalf("the node follows epoch %q, want a's %q", e, a.epoch())
	}
	if err := lab.Partition(ctx, "a", testenv.LabIP); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, func() error {
		if e, _ := f.Following(); e != b.epoch() {
			return fmt.Errorf("the node follows epoch %q, not b's %q", e, b.epoch())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// a's long poll is still waiting (it answers after lbPollWait, into
	// the partition): the node left a because a went silent, not because
	// the poll ended.
	if n := a.returned.Load(); n != 1 {
		t.Errorf("server a answered %d calls when the node moved to b, want 1 (the snapshot; its long poll still waiting)", n)
	}
}
