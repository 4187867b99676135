package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
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
	if f := lb.listeners["web"].fast; f != nil && f.requests.Load() != 1 {
		t.Errorf("fast path served %d handshakes, want 1", f.requests.Load())
	}
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

// TestTunnelBufferedBytes: bytes that arrive together with the Upgrade
// request (a frame right behind the head) and with the 101 (a frame
// right behind it) reach the other side before the sockets' own bytes.
func TestTunnelBufferedBytes(t *testing.T) {
	hello := "\x82\x02hi" // the target's first frame, sent with its 101
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"+hello)
		io.Copy(c, rw.Reader) // echo every byte until the tunnel closes
	})
	lb := start(t, baseConfig(be.addr))
	c, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	frame := func(p string) string { // masked with a zero key
		return string([]byte{0x82, 0x80 | byte(len(p)), 0, 0, 0, 0}) + p
	}
	early := frame("abc")
	head := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, head+early); err != nil { // one write
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	expect := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	expect(hello + early)
	later := frame("later")
	io.WriteString(c, later)
	expect(later)
	if f := lb.listeners["web"].fast; f != nil && f.requests.Load() != 1 {
		t.Errorf("fast path served %d handshakes, want 1", f.requests.Load())
	}
}
