package lb

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestRetriesWhileBackendCloses: GETs from several goroutines keep
// succeeding while one of two targets stops listening.
func TestRetriesWhileBackendCloses(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	cfg := baseConfig(a.addr, b.addr)
	cfg.Pools[0].Outlier = pool.Outlier{ConsecutiveFailures: 2}
	lb := start(t, cfg)
	c := client(t)
	const workers, each = 4, 150
	var failures, done atomic.Int64
	var wg sync.WaitGroup
	closed := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				resp, err := c.Get(lb.url + "/")
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
				if done.Add(1) == workers*each/3 {
					go func() { a.Close(); close(closed) }()
				}
			}
		}()
	}
	wg.Wait()
	<-closed
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed", n, workers*each)
	}
	resp, _ := get(t, c, lb.url+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("after: %d", resp.StatusCode)
	}
}

// resetBackend reads one request with its body per connection, counts it
// and resets the connection without answering.
func resetBackend(t *testing.T, count *atomic.Int64) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if _, err := io.ReadAll(req.Body); err != nil {
					return
				}
				count.Add(1)
				c.(*net.TCPConn).SetLinger(0) // close with RST
			}()
		}
	}()
	return l.Addr().String()
}

// TestPostResetIsNotRetried: a POST that reached the application gets 502
// and is never sent again.
func TestPostResetIsNotRetried(t *testing.T) {
	var seen atomic.Int64
	cfg := baseConfig(resetBackend(t, &seen), resetBackend(t, &seen))
	lb := start(t, cfg)
	resp, err := client(t).Post(lb.url+"/order", "text/plain", strings.NewReader("buy 1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if n := seen.Load(); n != 1 {
		t.Fatalf("targets saw the POST %d times, want 1", n)
	}
}

// TestGetResetIsRetried: an idempotent request reset by one target is
// retried on another.
func TestGetResetIsRetried(t *testing.T) {
	var seen atomic.Int64
	good := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	cfg := baseConfig(resetBackend(t, &seen), good.addr)
	cfg.Pools[0].Algorithm = pool.RoundRobin
	lb := start(t, cfg)
	c := client(t)
	for i := 0; i < 6; i++ {
		resp, body := get(t, c, lb.url+"/")
		if resp.StatusCode != 200 || body != "good" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if seen.Load() == 0 {
		t.Fatal("the resetting target was never tried")
	}
}

// TestRefusedPostIsRetried: a connection refused at dial never reached the
// application, so even a POST with a body is retried.
func TestRefusedPostIsRetried(t *testing.T) {
	good := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	})
	cfg := baseConfig(closedAddr(t), good.addr)
	lb := start(t, cfg)
	c := client(t)
	for i := 0; i < 6; i++ {
		resp, err := c.Post(lb.url+"/", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "got body" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

func TestTryTimeout504(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the backend's Close
	cfg := baseConfig(be.addr)
	cfg.Pools[0].TryTimeout = 50 * time.Millisecond
	lb := start(t, cfg)
	resp, err := client(t).Post(lb.url+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
}

func TestRetryBudget(t *testing.T) {
	b := newRetryBudget(0.5, 0)
	if b.withdraw() {
		t.Fatal("empty budget allowed a retry")
	}
	b.deposit()
	b.deposit()
	if !b.withdraw() || b.withdraw() {
		t.Fatal("two requests at ratio 0.5 must allow exactly one retry")
	}
	m := newRetryBudget(0, 2)
	if !m.withdraw() || !m.withdraw() {
		t.Fatal("min retries per second not allowed")
	}
}
