package lb

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Behaviour tests of the fast HTTP/1.1 path seen from a client on a real
// socket: what an event-loop implementation of the path (partial reads and
// writes, per-connection state, timers, backpressure, shutdown) can get
// wrong. They hold for any implementation of the path.

// fastCount is the number of requests the fast path of listener "web"
// served.
func fastCount(lb *running) int64 { return lb.listeners["web"].fast.requests.Load() }

// idSize is the deterministic response body size of request id: 0 to
// 40 KiB for every fourth id, else 0 to 2 KiB (most answers are small;
// the big ones span several reads and writes on every hop).
func idSize(id int) int {
	h := uint64(id) * 2654435761
	if id%4 == 0 {
		return int(h % (40<<10 + 1))
	}
	return int(h % (2<<10 + 1))
}

// idBody is id's decimal text and a comma repeated, cut to size bytes: a
// body that shows whose it is anywhere in it.
func idBody(id, size int) []byte {
	unit := strconv.Itoa(id) + ","
	return bytes.Repeat([]byte(unit), size/len(unit)+1)[:size]
}

// reqBody is the deterministic request body of POST id, 0 to 699 bytes.
func reqBody(id int) []byte { return idBody(id, id*31%700) }

// echoHandler answers /?id=N with X-Echo-Id: N and idBody(N, idSize(N)),
// framed by Content-Length, or chunked by net/http, or chunked in two
// flushed parts, depending on N. A POST's body must be reqBody(N), else
// the answer is 500.
func echoHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, "no id", http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodPost {
			got, err := io.ReadAll(r.Body)
			if err != nil || !bytes.Equal(got, reqBody(id)) {
				http.Error(w, fmt.Sprintf("request body of %d: %d bytes, %v", id, len(got), err), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("X-Echo-Id", strconv.Itoa(id))
		w.Header().Set("X-Backend", name)
		body := idBody(id, idSize(id))
		switch id % 3 {
		case 0:
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		case 1:
			w.Write(body) // net/http picks Content-Length or chunked
		default:
			half := len(body) / 2
			w.Write(body[:half])
			w.(http.Flusher).Flush()
			w.Write(body[half:])
		}
	}
}

// echoRequest is the request for id on a keep-alive connection; every
// fifth is a POST with reqBody(id).
func echoRequest(id int) []byte {
	if id%5 == 4 {
		b := reqBody(id)
		return append(fmt.Appendf(nil, "POST /?id=%d HTTP/1.1\r\nHost: loop\r\nContent-Length: %d\r\n\r\n", id, len(b)), b...)
	}
	return fmt.Appendf(nil, "GET /?id=%d HTTP/1.1\r\nHost: loop\r\n\r\n", id)
}

// checkEcho reads one response from br and checks it is id's answer; it
// returns the response's X-Request-Id.
func checkEcho(br *bufio.Reader, id int) (string, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("id %d: read response: %w", id, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("id %d: read body: %w", id, err)
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("id %d: status %d: %.200q", id, resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Echo-Id"); got != strconv.Itoa(id) {
		return "", fmt.Errorf("id %d: answer carries X-Echo-Id %q", id, got)
	}
	if want := idBody(id, idSize(id)); !bytes.Equal(body, want) {
		return "", fmt.Errorf("id %d: body of %d bytes (want %d) starts %.40q", id, len(body), len(want), body)
	}
	return resp.Header.Get("X-Request-Id"), nil
}

// dialLoop opens a raw connection to the balancer with a deadline that
// bounds the whole test's use of it.
func dialLoop(t testing.TB, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c
}

// TestFastLoopNoCrossTalk: 48 keep-alive connections, each sending 200
// sequential requests to three targets, every request with a unique id
// and a body of 0 to 40 KiB framed in varied ways (and every fifth a POST
// with a body), each get exactly their own answer, on their own
// connection, with a request id no other answer carries. This is what a
// loop that mixes up per-connection state, buffers or partial reads and
// writes between connections breaks.
func TestFastLoopNoCrossTalk(t *testing.T) {
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, newBackend(t, echoHandler(fmt.Sprint("be", i))).addr)
	}
	lb := start(t, baseConfig(addrs...))
	const conns, each = 48, 200
	var (
		mu   sync.Mutex
		rids = map[string]int{}
		wg   sync.WaitGroup
	)
	for ci := range conns {
		c := dialLoop(t, lb.addr, 60*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			mine := make([]string, 0, each)
			for i := range each {
				id := ci*1000 + i
				if _, err := c.Write(echoRequest(id)); err != nil {
					t.Errorf("conn %d: write id %d: %v", ci, id, err)
					return
				}
				rid, err := checkEcho(br, id)
				if err != nil {
					t.Errorf("conn %d: %v", ci, err)
					return
				}
				mine = append(mine, rid)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, rid := range mine {
				rids[rid]++
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(rids) != conns*each {
		t.Errorf("%d distinct X-Request-Id values in %d answers", len(rids), conns*each)
	}
	if n := fastCount(lb); n != conns*each {
		t.Errorf("fast path served %d requests, want %d", n, conns*each)
	}
}

// TestFastLoopPipelining: 51 requests written at once (a POST with a body
// in the middle of 50 GETs), and the same requests dribbled in 13-byte
// writes so heads and the body arrive split at every kind of boundary,
// are all answered, in order, on the fast path.
func TestFastLoopPipelining(t *testing.T) {
	be := newBackend(t, echoHandler("be"))
	lb := start(t, baseConfig(be.addr))
	var payload []byte
	var ids []int
	for i := range 51 {
		id := 100 + 5*i // a GET (id%5 == 0)
		if i == 25 {
			id = 9004 // a POST with reqBody(9004) in the middle
		}
		ids = append(ids, id)
		payload = append(payload, echoRequest(id)...)
	}
	for _, tc := range []struct {
		name  string
		piece int
	}{{"one write", len(payload)}, {"dribbled", 13}} {
		t.Run(tc.name, func(t *testing.T) {
			before := fastCount(lb)
			c := dialLoop(t, lb.addr, 10*time.Second)
			wrote := make(chan error, 1)
			go func() {
				for p := payload; len(p) > 0; {
					n := min(tc.piece, len(p))
					if _, err := c.Write(p[:n]); err != nil {
						wrote <- err
						return
					}
					p = p[n:]
				}
				wrote <- nil
			}()
			br := bufio.NewReader(c)
			for i, id := range ids {
				if _, err := checkEcho(br, id); err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write: %v", err)
			}
			if n := fastCount(lb) - before; n != int64(len(ids)) {
				t.Errorf("fast path served %d requests, want %d", n, len(ids))
			}
		})
	}
}

// bigBody is the 4 MiB response of TestFastLoopSlowReader: a pattern
// whose every 4 KiB block differs, so a lost, repeated or reordered block
// shows.
var bigBody = sync.OnceValue(func() []byte {
	b := make([]byte, 4<<20)
	for i := range b {
		b[i] = byte(i ^ i>>12 ^ i>>20)
	}
	return b
})

// chunkPiece is the i-th flushed piece of the streamed response.
func chunkPiece(i int) []byte { return idBody(i, 100+i*7%900) }

// smallRcvBuf is the receive buffer of a slow client: far below the 4 MiB
// it is sent. Not smaller: on loopback (MSS near 64 KiB) a window below
// the MSS makes TCP itself crawl on persist timers (4 KiB moves about
// 40 KB/s even with no proxy in between).
const smallRcvBuf = 32 << 10

// TestFastLoopSlowReader: a client with a small kernel receive buffer
// (smallRcvBuf) that reads in 1 KiB pieces gets a 4 MiB response intact, then a
// small one, then a response streamed by the target in 200 flushed chunks,
// then a small one, all on one connection. While another client leaves a
// 4 MiB response unread, a third connection is still served: one
// connection that cannot take bytes must not hold up the others.
func TestFastLoopSlowReader(t *testing.T) {
	var bigWritten atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(bigBody())))
			for p := bigBody(); len(p) > 0; p = p[min(64<<10, len(p)):] {
				if _, err := w.Write(p[:min(64<<10, len(p))]); err != nil {
					return
				}
				bigWritten.Add(int64(min(64<<10, len(p))))
			}
		case "/chunks":
			for i := range 200 {
				w.Write(chunkPiece(i))
				w.(http.Flusher).Flush()
			}
		default:
			io.WriteString(w, "small")
		}
	})
	lb := start(t, baseConfig(be.addr))

	t.Run("slow reader", func(t *testing.T) {
		before := fastCount(lb)
		c := dialLoop(t, lb.addr, 20*time.Second)
		if err := c.(*net.TCPConn).SetReadBuffer(smallRcvBuf); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReaderSize(c, 1024)
		ask := func(path string, want []byte) {
			t.Helper()
			if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: loop\r\n\r\n", path); err != nil {
				t.Fatalf("%s: write: %v", path, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			defer resp.Body.Close()
			var got []byte
			buf := make([]byte, 1024)
			for {
				n, err := resp.Body.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: after %d bytes: %v", path, len(got), err)
				}
			}
			if resp.StatusCode != 200 || !bytes.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Fatalf("%s: status %d, %d bytes (want %d), first difference at %d", path, resp.StatusCode, len(got), len(want), i)
			}
		}
		var chunks []byte
		for i := range 200 {
			chunks = append(chunks, chunkPiece(i)...)
		}
		ask("/big", bigBody())
		ask("/small", []byte("small"))
		ask("/chunks", chunks)
		ask("/small", []byte("small"))
		if n := fastCount(lb) - before; n != 4 {
			t.Errorf("fast path served %d requests, want 4", n)
		}
	})

	t.Run("stalled reader does not block others", func(t *testing.T) {
		bigWritten.Store(0)
		stalled := dialLoop(t, lb.addr, 20*time.Second)
		stalled.(*net.TCPConn).SetReadBuffer(smallRcvBuf)
		io.WriteString(stalled, "GET /big HTTP/1.1\r\nHost: loop\r\n\r\n")
		// The balancer is relaying the big answer into a connection that
		// takes nothing more.
		waitFor(t, 10*time.Second, "target to write 1 MiB", func() bool { return bigWritten.Load() >= 1<<20 })
		other := dialLoop(t, lb.addr, 10*time.Second)
		br := bufio.NewReader(other)
		for i := range 20 {
			io.WriteString(other, "GET /small HTTP/1.1\r\nHost: loop\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d beside a stalled connection: %v", i, err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || string(b) != "small" {
				t.Fatalf("request %d beside a stalled connection: %d %q %v", i, resp.StatusCode, b, err)
			}
		}
		// The stalled client now reads everything, intact.
		resp, err := http.ReadResponse(bufio.NewReader(stalled), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || n != int64(len(bigBody())) {
			t.Fatalf("stalled reader got %d bytes: %v", n, err)
		}
		if sum := sha256.Sum256(bigBody()); !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatal("stalled reader got the wrong bytes")
		}
	})
}

// TestFastLoopClientHangupCancels: a client that closes its connection
// while the target works on its request gets that request canceled at the
// target (the balancer closes the upstream connection), instead of the
// target working on for nobody.
func TestFastLoopClientHangupCancels(t *testing.T) {
	started := make(chan struct{}, 1)
	canceled := make(chan struct{}, 1)
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	lb := start(t, baseConfig(be.addr))
	t.Cleanup(func() { close(release) }) // runs before the balancer and target stop
	c, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /work HTTP/1.1\r\nHost: loop\r\n\r\n")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		c.Close()
		t.Fatal("request did not reach the target")
	}
	c.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the target's request was not canceled after the client hung up")
	}
	if n := fastCount(lb); n != 1 {
		t.Errorf("fast path served %d requests, want 1", n)
	}
}

// TestFastLoopIdleUpstreamClosed: a pooled upstream connection that the
// target closed while idle (its keep-alive timeout) is not used for the
// next request: a POST, which may not be retried once sent, succeeds and
// reaches the target exactly once, round after round.
//
// The target's idle timeout (500ms) is above the 200ms below which the
// goroutine fast path skips its liveness peek; a loop that watches its
// idle upstream connections would pass with any timeout.
func TestFastLoopIdleUpstreamClosed(t *testing.T) {
	var closed, posts atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		io.WriteString(w, r.Method+":"+string(b))
	}))
	s.Config.IdleTimeout = 500 * time.Millisecond
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	lb := start(t, baseConfig(strings.TrimPrefix(s.URL, "http://")))
	c := client(t)
	for round := range 2 {
		if resp, body := get(t, c, lb.url+"/warm"); resp.StatusCode != 200 || body != "GET:" {
			t.Fatalf("round %d: GET: %d %q", round, resp.StatusCode, body)
		}
		// The GET's upstream connection is pooled; wait for the target
		// to close it.
		want := closed.Load() + 1
		waitFor(t, 5*time.Second, "the target to close its idle connection", func() bool { return closed.Load() >= want })
		seen := posts.Load()
		payload := fmt.Sprintf("order-%d", round)
		resp, err := c.Post(lb.url+"/order", "text/plain", strings.NewReader(payload))
		if err != nil {
			t.Fatalf("round %d: POST: %v", round, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "POST:"+payload {
			t.Fatalf("round %d: POST after idle close: %d %q", round, resp.StatusCode, b)
		}
		if n := posts.Load() - seen; n != 1 {
			t.Fatalf("round %d: target saw the POST %d times", round, n)
		}
	}
	if n := fastCount(lb); n != 4 {
		t.Errorf("fast path served %d requests, want 4", n)
	}
}

// connClosed reports whether the balancer closed c (EOF or reset) before
// its deadline, with nothing more to read.
func connClosed(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	var b [512]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("read %q, want the connection closed", b[:n])
	case err == io.EOF || isReset(err):
		return nil
	default:
		return fmt.Errorf("connection not closed: %v", err)
	}
}

// TestFastLoopHeaderTimeout: the header timeout bounds a request head from
// its first byte, whether the client stops halfway or dribbles a byte
// every 50ms (a timer re-armed on each read would never fire); the client
// idle timeout closes a connection that sends nothing, at first or after
// a request. Each limit is checked with the other one set far away, so
// the right timer is proved to act, and a complete request on another
// connection is answered meanwhile.
func TestFastLoopHeaderTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	serve := func(t *testing.T, lb *running, c net.Conn) {
		t.Helper()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: loop\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("complete request beside stalled ones: %d %q", resp.StatusCode, b)
		}
		if n := fastCount(lb); n != 1 {
			t.Errorf("fast path served %d requests, want 1", n)
		}
	}

	t.Run("header timeout", func(t *testing.T) {
		cfg := baseConfig(be.addr)
		cfg.Limits.HeaderTimeout = 300 * time.Millisecond
		cfg.Limits.ClientIdle = time.Hour
		lb := start(t, cfg)
		half := dialLoop(t, lb.addr, 10*time.Second)
		if _, err := io.WriteString(half, "GET / HTTP/1.1\r\nHost: loop\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		slow := dialLoop(t, lb.addr, 10*time.Second)
		stop := make(chan struct{})
		dribbled := make(chan struct{})
		go func() {
			defer close(dribbled)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			head := "GET / HTTP/1.1\r\nHost: loop\r\nX-Slow: " + strings.Repeat("z", 200)
			for i := 0; i < len(head); i++ {
				if _, err := io.WriteString(slow, head[i:i+1]); err != nil {
					return // closed by the balancer
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		defer func() { close(stop); <-dribbled }()
		serve(t, lb, dialLoop(t, lb.addr, 10*time.Second))
		if err := connClosed(half, 5*time.Second); err != nil {
			t.Errorf("half head: %v", err)
		}
		if err := connClosed(slow, 5*time.Second); err != nil {
			t.Errorf("head dribbled a byte per 50ms: %v", err)
		}
	})

	t.Run("client idle", func(t *testing.T) {
		cfg := baseConfig(be.addr)
		cfg.Limits.HeaderTimeout = time.Hour
		cfg.Limits.ClientIdle = 300 * time.Millisecond
		lb := start(t, cfg)
		silent := dialLoop(t, lb.addr, 10*time.Second)
		used := dialLoop(t, lb.addr, 10*time.Second)
		serve(t, lb, used)
		if err := connClosed(silent, 5*time.Second); err != nil {
			t.Errorf("silent: %v", err)
		}
		if err := connClosed(used, 5*time.Second); err != nil {
			t.Errorf("idle after a request: %v", err)
		}
	})
}

// TestFastLoopManyConnsShutdown: with 100 keep-alive connections open, 10
// of them with a request held by the target, a graceful stop closes the
// 90 idle connections and the listener at once, lets the 10 requests
// finish with their answers, closes those connections after them, and Run
// returns without error.
func TestFastLoopManyConnsShutdown(t *testing.T) {
	var held atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held.Add(1)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "held")
			return
		}
		io.WriteString(w, "ok")
	})
	lb := start(t, baseConfig(be.addr))
	t.Cleanup(unblock) // runs before the balancer and target stop
	const conns, busy = 100, 10
	cs := make([]net.Conn, conns)
	brs := make([]*bufio.Reader, conns)
	for i := range cs {
		cs[i] = dialLoop(t, lb.addr, 15*time.Second)
		brs[i] = bufio.NewReader(cs[i])
		io.WriteString(cs[i], "GET / HTTP/1.1\r\nHost: loop\r\n\r\n")
	}
	for i := range cs {
		resp, err := http.ReadResponse(brs[i], nil)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("conn %d: %d %q", i, resp.StatusCode, b)
		}
	}
	for i := range busy {
		io.WriteString(cs[i], "GET /hold HTTP/1.1\r\nHost: loop\r\n\r\n")
	}
	waitFor(t, 5*time.Second, "the held requests to reach the target", func() bool { return held.Load() == busy })
	lb.cancel()
	waitFor(t, 5*time.Second, "the listener to close", func() bool {
		c, err := net.Dial("tcp", lb.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	for i := busy; i < conns; i++ {
		if err := connClosed(cs[i], 5*time.Second); err != nil {
			t.Fatalf("idle conn %d after stop: %v", i, err)
		}
	}
	select {
	case err := <-lb.done:
		lb.done <- err // for the cleanup's stop
		t.Fatalf("Run returned (%v) with %d requests in flight", err, busy)
	default:
	}
	unblock()
	for i := range busy {
		cs[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(brs[i], nil)
		if err != nil {
			t.Fatalf("held request %d: %v", i, err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "held" {
			t.Fatalf("held request %d: %d %q", i, resp.StatusCode, b)
		}
		if _, err := brs[i].ReadByte(); err != io.EOF && !isReset(err) {
			t.Errorf("busy conn %d: not closed after its answer: %v", i, err)
		}
	}
	lb.stop(t)
	if n := fastCount(lb); n != conns+busy {
		t.Errorf("fast path served %d requests, want %d", n, conns+busy)
	}
}

// deadTarget returns a loopback address that refuses connections.
func deadTarget(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestFastLoopUpstreamDown: with one of two targets refusing connections,
// 100 GETs all succeed (a refused dial is retried on the other target);
// with the only target refusing, a POST and then a GET on the same
// connection each get 502, in order, and the connection stays usable.
func TestFastLoopUpstreamDown(t *testing.T) {
	live := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live") })
	dead := deadTarget(t)
	cfg := baseConfig(dead, live.addr)
	cfg.RetryBudget = 1 // every request may retry once, however fast they come
	lb := start(t, cfg)
	c := dialLoop(t, lb.addr, 10*time.Second)
	br := bufio.NewReader(c)
	for i := range 100 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: loop\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "live" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := fastCount(lb); n != 100 {
		t.Errorf("fast path served %d requests, want 100", n)
	}

	down := start(t, baseConfig(dead))
	dc := dialLoop(t, down.addr, 10*time.Second)
	io.WriteString(dc, "POST /order HTTP/1.1\r\nHost: loop\r\nContent-Length: 5\r\n\r\nbuy 1GET / HTTP/1.1\r\nHost: loop\r\n\r\n")
	dbr := bufio.NewReader(dc)
	for _, what := range []string{"POST", "GET"} {
		resp, err := http.ReadResponse(dbr, nil)
		if err != nil {
			t.Fatalf("%s to a dead pool: %v", what, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s to a dead pool: status %d, want 502", what, resp.StatusCode)
		}
	}
	if n := down.listeners["web"].fast.requests.Load(); n != 2 {
		t.Errorf("fast path of the dead pool served %d requests, want 2", n)
	}
}

// TestFastLoopLargeRequestBody: a 1 MiB POST body followed by a GET on
// the same keep-alive connection, written at once or dribbled (head, body
// in 64 KiB pieces, next request), reaches the target whole (it answers
// the body's SHA-256) and both answers come back in order. Which path
// serves the POST is not asserted.
func TestFastLoopLargeRequestBody(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			io.WriteString(w, "get-ok")
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d:%s", n, hex.EncodeToString(h.Sum(nil)))
	})
	lb := start(t, baseConfig(be.addr))
	body := bigBody()[:1<<20]
	sum := sha256.Sum256(body)
	wantPost := fmt.Sprintf("%d:%s", len(body), hex.EncodeToString(sum[:]))
	head := fmt.Appendf(nil, "POST /upload HTTP/1.1\r\nHost: loop\r\nContent-Length: %d\r\n\r\n", len(body))
	next := []byte("GET /after HTTP/1.1\r\nHost: loop\r\n\r\n")
	for _, tc := range []struct {
		name   string
		pieces [][]byte
	}{
		{"one write", [][]byte{append(append(append([]byte(nil), head...), body...), next...)}},
		{"dribbled", func() [][]byte {
			ps := [][]byte{head}
			for p := body; len(p) > 0; p = p[min(64<<10, len(p)):] {
				ps = append(ps, p[:min(64<<10, len(p))])
			}
			return append(ps, next)
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialLoop(t, lb.addr, 10*time.Second)
			wrote := make(chan error, 1)
			go func() {
				for _, p := range tc.pieces {
					if _, err := c.Write(p); err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			br := bufio.NewReader(c)
			for _, want := range []string{wantPost, "get-ok"} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("want %q: %v", want, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != want {
					t.Fatalf("got %d %q, want %q", resp.StatusCode, b, want)
				}
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write: %v", err)
			}
		})
	}
}

// TestFastLoopAbortsDoNotPoisonPool: a client that hangs up halfway
// through a 4 MiB answer, or halfway through sending a POST body, leaves
// no half-used upstream connection in the pool: the target's handler for
// the aborted exchange ends, and the requests that follow on new
// connections, to the same single target, each get exactly their own
// answer.
func TestFastLoopAbortsDoNotPoisonPool(t *testing.T) {
	ended := make(chan string, 16)
	echo := echoHandler("be")
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			defer func() { ended <- "big" }()
			w.Header().Set("Content-Length", strconv.Itoa(len(bigBody())))
			w.Write(bigBody())
		case "/partial":
			defer func() { ended <- "partial" }()
			io.Copy(io.Discard, r.Body)
		default:
			echo(w, r)
		}
	})
	lb := start(t, baseConfig(be.addr))
	id := 0
	for round := range 3 {
		for _, abort := range []string{"big", "partial"} {
			c, err := net.Dial("tcp", lb.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if abort == "big" {
				io.WriteString(c, "GET /big HTTP/1.1\r\nHost: loop\r\n\r\n")
				if _, err := io.ReadFull(c, make([]byte, 64<<10)); err != nil {
					c.Close()
					t.Fatalf("round %d: start of the big answer: %v", round, err)
				}
			} else {
				io.WriteString(c, "POST /partial HTTP/1.1\r\nHost: loop\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("p", 5000))
			}
			c.Close()
			select {
			case got := <-ended:
				if got != abort {
					t.Fatalf("round %d: handler %q ended, want %q", round, got, abort)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: the target's %s handler still runs after its client hung up", round, abort)
			}
			for range 3 {
				c := dialLoop(t, lb.addr, 10*time.Second)
				br := bufio.NewReader(c)
				for range 4 {
					id++
					c.Write(echoRequest(id))
					if _, err := checkEcho(br, id); err != nil {
						t.Fatalf("round %d after aborted %s: %v", round, abort, err)
					}
				}
				c.Close()
			}
		}
	}
}
