package lb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsEcho is a WebSocket echo target; opened receives a value per
// accepted socket, closed when the handler ends.
func wsEcho(t testing.TB, opened chan<- struct{}, ended chan<- error) *backend {
	return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		if opened != nil {
			opened <- struct{}{}
		}
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				if ended != nil {
					ended <- err
				}
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
}

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("101 without X-Request-Id")
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestWebSocketEcho(t *testing.T) {
	be := wsEcho(t, nil, nil)
	lb := start(t, baseConfig(be.addr))
	c := dialWS(t, lb.addr+"/ws")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = byte(i)
	}
	for _, msg := range [][]byte{[]byte("hello"), make([]byte, 300), big} {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("echo of %d bytes: got %d, %v", len(msg), len(got), err)
		}
	}
	if st := lb.Status(); st.WebSockets != 1 {
		t.Errorf("status websockets = %d", st.WebSockets)
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "tunnel closed", func() bool { return lb.Status().WebSockets == 0 })
}

// TestDrainClosesWebSocket: draining the target with a short timeout
// sends the client a 1001 close frame and the target becomes idle.
func TestDrainClosesWebSocket(t *testing.T) {
	opened := make(chan struct{}, 1)
	ended := make(chan error, 1)
	be := wsEcho(t, opened, ended)
	lb := start(t, baseConfig(be.addr))
	c := dialWS(t, lb.addr+"/ws")
	<-opened
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	idle, err := lb.DrainTarget("app", be.addr, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("client read: %v, want close 1001", err)
	}
	select {
	case <-idle:
	case <-ctx.Done():
		t.Fatal("target never reported idle")
	}
	select {
	case err := <-ended:
		if s := websocket.CloseStatus(err); s != websocket.StatusGoingAway && s != -1 {
			t.Errorf("target saw close %v", s)
		}
	case <-ctx.Done():
		t.Fatal("target socket not closed")
	}
}

// TestShutdownClosesWebSocket: Run's graceful stop ends open WebSockets
// with 1001 at its deadline and returns.
func TestShutdownClosesWebSocket(t *testing.T) {
	opened := make(chan struct{}, 1)
	be := wsEcho(t, opened, nil)
	cfg := baseConfig(be.addr)
	cfg.Limits.ShutdownTimeout = 50 * time.Millisecond
	lb := start(t, cfg)
	c := dialWS(t, lb.addr+"/ws")
	<-opened
	lb.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("client read: %v, want close 1001", err)
	}
	lb.stop(t)
}

// TestInFlightCompletesDuringDrain: a request in flight on a drained
// target finishes; new requests go elsewhere; the target becomes idle.
func TestInFlightCompletesDuringDrain(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "slow")
	})
	fast := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })
	cfg := baseConfig(slow.addr)
	lb := start(t, cfg)
	c := client(t)
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(lb.url + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{body: string(b)}
	}()
	<-started
	if err := lb.AddTarget("app", targets(fast.addr)[0]); err != nil {
		t.Fatal(err)
	}
	idle, err := lb.DrainTarget("app", slow.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, body := get(t, c, lb.url+"/"); body != "fast" {
			t.Fatalf("new request went to %q during drain", body)
		}
	}
	select {
	case <-idle:
		t.Fatal("idle before the in-flight request finished")
	default:
	}
	close(release)
	r := <-done
	if r.err != nil || r.body != "slow" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("target not idle after its request finished")
	}
}

// TestWebSocketIdleTimeout: with Limits.WebSocketIdle, a silent tunnel is
// closed.
func TestWebSocketIdleTimeout(t *testing.T) {
	be := wsEcho(t, nil, nil)
	cfg := baseConfig(be.addr)
	cfg.Limits.WebSocketIdle = 100 * time.Millisecond
	lb := start(t, cfg)
	c := dialWS(t, lb.addr+"/ws")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("idle tunnel not closed: %v", err)
	}
}
