package lb

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Raw is a hand-built HTTP/2 client connection, for the cases a real
// client never makes.
type h2Raw struct {
	t    *testing.T
	conn *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32
}

// dialH2 opens a connection to lb's TLS listener, sends the preface and
// settings, and waits for the server's SETTINGS.
func dialRawH2(t *testing.T, lb *running, settings ...http2.Setting) *h2Raw {
	t.Helper()
	conn, err := tls.Dial("tcp", lb.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q", p)
	}
	return startRawH2(t, conn, settings...)
}

// startRawH2 sends the preface and settings on conn, whose handshake
// chose h2, and waits for the server's SETTINGS.
func startRawH2(t *testing.T, conn *tls.Conn, settings ...http2.Setting) *h2Raw {
	t.Helper()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &h2Raw{t: t, conn: conn, next: 1}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.fr.WriteSettings(settings...)
	for {
		f := c.read()
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			c.fr.WriteSettingsAck()
			return c
		}
	}
}

func (c *h2Raw) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// request opens a stream with the given fields after the usual
// pseudo-fields (GET https a.test path), and returns its id.
func (c *h2Raw) request(path string, end bool, fields ...string) uint32 {
	c.t.Helper()
	id := c.next
	c.next += 2
	c.hbuf.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.test"}, {":path", path}} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	return id
}

// answer reads frames until stream id ends: its status (0 when reset),
// body and reset code.
func (c *h2Raw) answer(id uint32) (int, []byte, http2.ErrCode) {
	c.t.Helper()
	status := 0
	var body []byte
	for range 100000 {
		f := c.read()
		if f.Header().StreamID != id {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status, _ = strconv.Atoi(f.PseudoValue("status"))
			if f.StreamEnded() {
				return status, body, 0
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if len(f.Data()) > 0 {
				c.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				c.fr.WriteWindowUpdate(id, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				return status, body, 0
			}
		case *http2.RSTStreamFrame:
			return status, body, f.ErrCode
		}
	}
	c.t.Fatal("no end of stream")
	return 0, nil, 0
}

// TestH2FastPathSmuggling: requests HTTP/2 forbids (connection-specific
// fields, TE other than trailers, uppercase names, a Content-Length the
// DATA does not match, missing pseudo-fields) are reset with
// PROTOCOL_ERROR, never reach the target, and the connection goes on.
func TestH2FastPathSmuggling(t *testing.T) {
	var seen atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		io.WriteString(w, "ok")
	})
	lb, _ := h2FastLB(t, baseConfig(be.addr))
	c := dialRawH2(t, lb)
	for _, fields := range [][]string{
		{"connection", "keep-alive"},
		{"upgrade", "h2c"},
		{"transfer-encoding", "chunked"},
		{"keep-alive", "5"},
		{"proxy-connection", "close"},
		{"te", "gzip"},
		{"X-Upper", "1"},
	} {
		id := c.request("/x", true, fields...)
		if st, _, code := c.answer(id); code != http2.ErrCodeProtocol {
			t.Errorf("%v: status %d, reset %v; want PROTOCOL_ERROR", fields, st, code)
		}
	}
	// Content-Length larger than the DATA sent.
	id := c.request("/x", false, "content-length", "10")
	c.fr.WriteData(id, true, []byte("abc"))
	if _, _, code := c.answer(id); code != http2.ErrCodeProtocol {
		t.Errorf("content-length mismatch: reset %v", code)
	}
	// No :path.
	c.hbuf.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.test"}} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	id = c.next
	c.next += 2
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	if _, _, code := c.answer(id); code != http2.ErrCodeProtocol {
		t.Errorf("no :path: reset %v", code)
	}
	if n := seen.Load(); n != 0 {
		t.Errorf("the target saw %d refused requests", n)
	}
	id = c.request("/after", true, "te", "trailers")
	if st, body, code := c.answer(id); st != 200 || string(body) != "ok" || code != 0 {
		t.Errorf("after the refusals: %d %q %v", st, body, code)
	}
}

// TestH2FastPathFlowControl: a client that grants a small window gets no
// more than it allows, and all of a large answer as it grants more; a
// stream it resets mid-body ends alone.
func TestH2FastPathFlowControl(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	})
	lb, _ := h2FastLB(t, baseConfig(be.addr))
	c := dialRawH2(t, lb, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	id := c.request("/big", true)
	got := 0
	for got < 1000 {
		f := c.read()
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id {
			got += len(d.Data())
		}
	}
	if got != 1000 {
		t.Fatalf("%d bytes sent in a window of 1000", got)
	}
	// Nothing more comes until the window grows: a PING's answer comes
	// first.
	c.fr.WritePing(false, [8]byte{1})
	for {
		f := c.read()
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id && len(d.Data()) > 0 {
			t.Fatalf("DATA beyond the window")
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			break
		}
	}
	c.fr.WriteWindowUpdate(id, 1000)
	st, body, code := c.answer(id)
	if code != 0 || len(body)+got != len(big) {
		t.Fatalf("slow reader: status %d, %d+%d bytes, reset %v", st, got, len(body), code)
	}
	// Reset mid-body: the connection serves the next stream.
	id = c.request("/big", true)
	for {
		if d, ok := c.read().(*http2.DataFrame); ok && d.StreamID == id {
			break
		}
	}
	c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	id = c.request("/big", true)
	if st, body, code := c.answer(id); st != 200 || len(body) != len(big) || code != 0 {
		t.Fatalf("after a reset: %d, %d bytes, %v", st, len(body), code)
	}
}

// TestH2FastPathTargetDies: a target that closes without answering gives
// the stream a 502; one that dies mid-body resets the stream; the
// connection serves the next streams either way.
func TestH2FastPathTargetDies(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/die":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "/half":
			conn, bw, _ := w.(http.Hijacker).Hijack()
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
			bw.Write(make([]byte, 5000))
			bw.Flush()
			conn.Close()
		default:
			io.WriteString(w, "ok")
		}
	})
	cfg := baseConfig(be.addr)
	lb, _ := h2FastLB(t, cfg)
	c := dialRawH2(t, lb)
	id := c.request("/die", true)
	if st, _, code := c.answer(id); st != http.StatusBadGateway || code != 0 {
		t.Errorf("target closed: status %d, reset %v; want 502", st, code)
	}
	id = c.request("/half", true)
	if st, body, code := c.answer(id); st != 200 || code == 0 || len(body) >= 100000 {
		t.Errorf("target died mid-body: status %d, %d bytes, reset %v; want a reset", st, len(body), code)
	}
	id = c.request("/ok", true)
	if st, body, code := c.answer(id); st != 200 || string(body) != "ok" || code != 0 {
		t.Errorf("next stream: %d %q %v", st, body, code)
	}
}

// TestH2FastPathDrain: at shutdown the server sends GOAWAY; a stream in
// flight still gets its whole answer, then the connection closes.
func TestH2FastPathDrain(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "late")
	})
	lb, _ := h2FastLB(t, baseConfig(be.addr))
	c := dialRawH2(t, lb)
	id := c.request("/slow", true)
	<-arrived
	lb.cancel() // Run drains
	for {
		if g, ok := c.read().(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo || g.LastStreamID < id {
				t.Fatalf("GOAWAY %v, last stream %d (in flight: %d)", g.ErrCode, g.LastStreamID, id)
			}
			break
		}
	}
	close(release)
	if st, body, code := c.answer(id); st != 200 || string(body) != "late" || code != 0 {
		t.Fatalf("stream in flight at drain: %d %q %v", st, body, code)
	}
	for {
		if _, err := c.fr.ReadFrame(); err != nil {
			if err != io.EOF && !isReset(err) {
				t.Fatalf("after the last stream: %v", err)
			}
			break
		}
	}
}
