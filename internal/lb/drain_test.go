package lb

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestDrainDeadlineCutsRequest: a request still in flight at the drain
// deadline is ended (502 before headers) and the target becomes idle.
func TestDrainDeadlineCutsRequest(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	lb := start(t, baseConfig(be.addr))
	done := make(chan int, 1)
	go func() {
		resp, err := client(t).Get(lb.url + "/hang")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-started
	idle, err := lb.DrainTarget("app", be.addr, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", code)
	}
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("target not idle")
	}
}

// TestShutdownLetsInFlightFinish: Run's graceful stop waits for a request
// in flight, which completes normally.
func TestShutdownLetsInFlightFinish(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})
	lb := start(t, baseConfig(be.addr))
	type res struct {
		body string
		err  error
	}
	done := make(chan res, 1)
	go func() {
		resp, err := client(t).Get(lb.url + "/slow")
		if err != nil {
			done <- res{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- res{body: string(b)}
	}()
	<-started
	lb.cancel()
	// New connections are refused once listeners close.
	waitFor(t, 5*time.Second, "listener closed", func() bool {
		resp, err := http.Get(lb.url + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	close(release)
	if r := <-done; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	lb.stop(t)
}
