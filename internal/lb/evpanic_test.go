package lb

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// panicker is a loop handler whose every event panics.
type panicker struct{ n atomic.Int32 }

func (p *panicker) event(netpoll.Events) {
	p.n.Add(1)
	panic("test: handler bug")
}
func (p *panicker) expire(time.Duration) {}

// TestLoopSurvivesHandlerPanic: a panic while handling one connection is
// logged and ends that connection; the loop (and the balancer) go on
// serving, and the broken handler is not called again.
func TestLoopSurvivesHandlerPanic(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.Loops = 1
	lb := start(t, cfg)
	c := client(t)
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("before: %d %q", resp.StatusCode, body)
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	f := lb.listeners["web"].fast
	f.mu.Lock()
	l := f.loops[0]
	f.mu.Unlock()
	p := &panicker{}
	added := make(chan error, 1)
	l.post(func() {
		_, err := l.add(fds[0], netpoll.In, p)
		added <- err
	})
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	for range 2 {
		unix.Write(fds[1], []byte{1})
		for i := range 3 {
			if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("after the panic, request %d: %d %q", i, resp.StatusCode, body)
			}
		}
	}
	if n := p.n.Load(); n != 1 {
		t.Fatalf("the panicking handler ran %d times, want once (then removed)", n)
	}
}
