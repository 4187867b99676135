package testenv

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"
)

// H2Conn is a raw HTTP/2 client connection over TLS: a test writes the
// exact header list, which Go's client would refuse or change (a :method
// with a space, a header list of an exact size).
type H2Conn struct {
	t testing.TB
	c *tls.Conn
}

// DialH2 connects to addr with cfg (ALPN h2 added), checks that h2 was
// negotiated and sends the preface and an empty SETTINGS frame; the
// connection is closed when the test ends.
func DialH2(t testing.TB, addr string, cfg *tls.Config) *H2Conn {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &H2Conn{t: t, c: c}
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	h.frame(0x4, 0, 0, nil) // SETTINGS
	return h
}

func (h *H2Conn) frame(typ, flags byte, stream uint32, payload []byte) {
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

// Request sends one request with exactly these fields (literal, never
// indexed, no Huffman) on stream 1, split into CONTINUATION frames, and
// returns the answer's status, or 0 when the stream or connection was
// reset.
func (h *H2Conn) Request(fields [][2]string) int {
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
func h2Status(t testing.TB, blk []byte) int {
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
