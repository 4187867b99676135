package lb

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/h1"
)

// headOfSize is a GET head of exactly size bytes (request line, fields,
// final CRLF), padded with an X-Pad field.
func headOfSize(t *testing.T, size int) string {
	t.Helper()
	pre := "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: "
	post := "\r\n\r\n"
	n := size - len(pre) - len(post)
	if n < 1 {
		t.Fatalf("head of %d bytes is too small", size)
	}
	return pre + strings.Repeat("p", n) + post
}

// TestHeaderLimitExact: a head of max_header_bytes passes, one byte more
// gets 431, on whichever path carries it (the 16 KiB fast path buffer
// holds the 8 KiB heads; 64 KiB ones are handed to net/http).
func TestHeaderLimitExact(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, limit := range []int{8 << 10, DefaultMaxHeaderBytes} {
		cfg := baseConfig(be.addr)
		if limit != DefaultMaxHeaderBytes {
			cfg.Limits.MaxHeaderBytes = limit
		}
		lb := start(t, cfg)
		for _, size := range []int{limit - 1, limit, limit + 1} {
			want := 200
			if size > limit {
				want = 431
			}
			resps := readResponses(t, raw(t, lb.addr, headOfSize(t, size)))
			if len(resps) != 1 || resps[0].StatusCode != want {
				t.Errorf("limit %d, head of %d bytes: got %v, want one %d", limit, size, statuses(resps), want)
			}
		}
	}
}

// TestHeaderLimitPipelined: the head over the limit is answered 431 in
// its turn, after the requests before it on the same connection.
func TestHeaderLimitPipelined(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxHeaderBytes = 2048
	lb := start(t, cfg)
	ok := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	big := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 2049-len("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n")) + "\r\n\r\n"
	resps := readResponses(t, raw(t, lb.addr, ok+big+ok))
	if got := statuses(resps); fmt.Sprint(got) != "[200 431]" {
		t.Fatalf("statuses %v, want [200 431]", got)
	}
}

// TestRequestLineLimit: request lines up to 16 KiB pass by default (an
// 8 KiB one used to get 414); one byte more gets 414.
func TestRequestLineLimit(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	lb := start(t, baseConfig(be.addr))
	line := func(n int) string { // "GET /ppp HTTP/1.1" of n bytes
		return "GET /" + strings.Repeat("p", n-len("GET / HTTP/1.1")) + " HTTP/1.1"
	}
	for _, tc := range []struct{ n, want int }{{8 << 10, 200}, {8<<10 + 100, 200}, {DefaultMaxRequestLine, 200}, {DefaultMaxRequestLine + 1, 414}} {
		resps := readResponses(t, raw(t, lb.addr, line(tc.n)+"\r\nHost: a\r\nConnection: close\r\n\r\n"))
		if len(resps) != 1 || resps[0].StatusCode != tc.want {
			t.Errorf("request line of %d bytes: got %v, want one %d", tc.n, statuses(resps), tc.want)
		}
	}
}

func statuses(resps []*http.Response) []int {
	var out []int
	for _, r := range resps {
		out = append(out, r.StatusCode)
	}
	return out
}

// h2Conn is a raw HTTP/2 client connection: the test writes the exact
// header list, which Go's client would refuse or change.
type h2Conn struct {
	t *testing.T
	c *tls.Conn
}

func dialH2(t *testing.T, addr string, roots *x509.CertPool, name string) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &h2Conn{t: t, c: c}
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	h.frame(0x4, 0, 0, nil) // SETTINGS
	return h
}

func (h *h2Conn) frame(typ, flags byte, stream uint32, payload []byte) {
	var hdr [9]byte
	hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	hdr[3], hdr[4] = typ, flags
	binary.BigEndian.PutUint32(hdr[5:], stream)
	if _, err := h.c.Write(append(hdr[:], payload...)); err != nil {
		h.t.Fatalf("write frame: %v", err)
	}
}

// hpackInt appends v with an n-bit prefix whose other bits are first.
func hpackInt(b []byte, first byte, n uint, v int) []byte {
	max := 1<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	for v -= max; v >= 128; v >>= 7 {
		b = append(b, byte(v%128+128))
	}
	return append(b, byte(v))
}

// request sends one request with exactly these fields (literal, never
// indexed, no Huffman) on stream 1, split into CONTINUATION frames, and
// returns the answer's status, or 0 when the stream or connection was
// reset.
func (h *h2Conn) request(fields [][2]string) int {
	var blk []byte
	for _, f := range fields {
		blk = append(blk, 0x10)
		blk = hpackInt(blk, 0, 7, len(f[0]))
		blk = append(blk, f[0]...)
		blk = hpackInt(blk, 0, 7, len(f[1]))
		blk = append(blk, f[1]...)
	}
	typ, flags := byte(0x1), byte(0x1) // HEADERS, END_STREAM
	for first := true; first || len(blk) > 0; first = false {
		n := min(len(blk), 16384)
		fl := flags
		if n == len(blk) {
			fl |= 0x4 // END_HEADERS
		}
		h.frame(typ, fl, 1, blk[:n])
		blk = blk[n:]
		typ, flags = 0x9, 0 // CONTINUATION
	}
	for range 100 {
		var hdr [9]byte
		if _, err := io.ReadFull(h.c, hdr[:]); err != nil {
			return 0
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(h.c, payload); err != nil {
			return 0
		}
		switch typ, flags := hdr[3], hdr[4]; {
		case typ == 0x4 && flags&0x1 == 0:
			h.frame(0x4, 0x1, 0, nil) // SETTINGS ACK
		case typ == 0x3, typ == 0x7: // RST_STREAM, GOAWAY
			return 0
		case typ == 0x1:
			if flags&0x8 != 0 { // PADDED
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			if flags&0x20 != 0 { // PRIORITY
				payload = payload[5:]
			}
			return h2Status(h.t, payload)
		}
	}
	h.t.Fatal("no answer in 100 frames")
	return 0
}

// h2Status decodes :status, the first field Go's server encodes: a
// static-table entry, or a literal with the :status name and a raw or
// Huffman-coded value of digits.
func h2Status(t *testing.T, blk []byte) int {
	static := map[byte]int{8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
	b := blk[0]
	if b&0x80 != 0 {
		return static[b&0x7f]
	}
	if idx := b & 0x0f; b&0xc0 == 0x40 && b&0x30 != 0 || b&0xe0 == 0 && (idx < 8 || idx > 14) {
		t.Fatalf("first field %#x is not :status", b)
	}
	n, huff := int(blk[1]&0x7f), blk[1]&0x80 != 0
	v := blk[2 : 2+n]
	if !huff {
		var s int
		fmt.Sscan(string(v), &s)
		return s
	}
	// RFC 7541 Appendix B: '0'-'2' are 5-bit codes 0-2, '3'-'9' 6-bit
	// codes 0x19-0x1f.
	var bits uint64
	for _, c := range v {
		bits = bits<<8 | uint64(c)
	}
	avail, s := uint(8*len(v)), 0
	for range 3 {
		avail -= 5
		d := int(bits >> avail & 0x1f)
		if d > 2 {
			avail--
			d = int(bits>>avail&0x3f) - 0x19 + 3
		}
		s = s*10 + d
	}
	return s
}

// tlsLB runs a balancer with one TLS listener for a.test.
func tlsLB(t *testing.T, cfg Config) (*running, *x509.CertPool) {
	t.Helper()
	c, leaf := writeCert(t, t.TempDir(), "a.test")
	cfg.Listeners[0].TLS = []Certificate{c}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return start(t, cfg), roots
}

// TestHTTP2MalformedMethod: a :method that is not a token is refused as
// malformed (it used to reach the proxy step and get 502).
func TestHTTP2MalformedMethod(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if !h1.ValidMethod(r.Method) {
			t.Errorf("target reached with method %q", r.Method)
		}
	})
	lb, roots := tlsLB(t, baseConfig(be.addr))
	for _, m := range []string{"GE T", "GET\x01", "(GET)"} {
		st := dialH2(t, lb.addr, roots, "a.test").request([][2]string{{":method", m}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}})
		if st != 400 && st != 0 {
			t.Errorf(":method %q: status %d, want 400 or a reset", m, st)
		}
	}
	if st := dialH2(t, lb.addr, roots, "a.test").request([][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}}); st != 200 {
		t.Errorf("valid request: status %d, want 200", st)
	}
}

// TestHeaderLimitExactHTTP2: an HTTP/2 header list (RFC 9113 size: names,
// values and 32 per field) of max_header_bytes passes, one more gets 431.
func TestHeaderLimitExactHTTP2(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, limit := range []int{8 << 10, DefaultMaxHeaderBytes} {
		cfg := baseConfig(be.addr)
		cfg.Limits.MaxHeaderBytes = limit
		lb, roots := tlsLB(t, cfg)
		for _, size := range []int{limit - 1, limit, limit + 1} {
			fields := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}}
			used := 0
			for _, f := range fields {
				used += len(f[0]) + len(f[1]) + 32
			}
			fields = append(fields, [2]string{"x-pad", strings.Repeat("p", size-used-len("x-pad")-32)})
			want := 200
			if size > limit {
				want = 431
			}
			if st := dialH2(t, lb.addr, roots, "a.test").request(fields); st != want {
				t.Errorf("limit %d, header list of %d bytes: status %d, want %d", limit, size, st, want)
			}
		}
	}
}
