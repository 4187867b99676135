package lb

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"

	"golang.org/x/net/http2/hpack"
)

// h2Guard reads an HTTP/2 client connection for x/net's server and
// changes what two of RFC 9113's rules need before the server sees it
// (h2spec's strict cases; HAProxy follows both):
//
//   - A SETTINGS frame may repeat a setting; its values apply in order
//     (6.5.3), so only the last counts. Go's server closes the connection
//     on a repeat; the guard keeps one entry per setting: the last, or
//     the first invalid one so that the server still answers it with the
//     connection error it calls for.
//   - A request with a connection-specific field (Connection, Keep-Alive,
//     Proxy-Connection, Transfer-Encoding, Upgrade) or a TE other than
//     "trailers" is malformed: a stream error PROTOCOL_ERROR (8.2.2), not
//     the 400 response Go's server sends. The guard decodes every header
//     block with its own HPACK decoder (in step with the server's: it sees
//     the same blocks), and after a malformed one it appends a
//     CONTINUATION with a field name Go refuses (uppercase; a literal that
//     leaves the dynamic table alone), so the server resets that stream
//     and the connection goes on.
//
// Other frames pass as they are: their 9-byte header through the guard's
// buffer, their payload straight into the server's buffer. After
// anything it cannot follow (a frame over h2MaxFrameSize, a broken HPACK
// block, a CONTINUATION out of place) the guard stops looking and passes
// every byte on: the server finds the same problem and ends the
// connection. Only the server's goroutine reads; the embedded *tls.Conn
// gives the server the TLS state (ConnectionState) and everything else.
type h2Guard struct {
	*tls.Conn
	src  io.Reader // the client's bytes: the *tls.Conn
	pass int       // bytes to pass on before the next frame header (the preface first)
	in   []byte    // the frame being collected: header, then payload when looked at
	// collecting: in holds the start of a frame; else its bytes may still
	// be in out, and the next frame starts in from empty.
	collecting bool
	out        []byte // bytes ready for the server
	off        bool   // stopped looking
	dec        *hpack.Decoder
	bad        bool   // the header block being decoded is malformed
	block      uint32 // stream of the header block under way; 0 when none
}

// HTTP/2 frame types and flags the guard reads (RFC 9113 6).
const (
	h2FrameHeaders      = 0x1
	h2FrameSettings     = 0x4
	h2FrameContinuation = 0x9

	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2FrameHeaderLen = 9
	h2PrefaceLen     = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", checked by the server
)

// h2DecoderTableSize is the server's HPACK decoder table size (x/net's
// default, which the server advertises); the guard's decoder mirrors it.
const h2DecoderTableSize = 4096

func newH2Guard(c *tls.Conn) *h2Guard {
	g := &h2Guard{Conn: c, src: c, pass: h2PrefaceLen, in: make([]byte, 0, 512)}
	g.dec = hpack.NewDecoder(h2DecoderTableSize, g.field)
	return g
}

// Read implements net.Conn for the server.
func (g *h2Guard) Read(p []byte) (int, error) {
	for {
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		if g.off {
			return g.src.Read(p)
		}
		if g.pass > 0 {
			if len(p) > g.pass {
				p = p[:g.pass]
			}
			n, err := g.src.Read(p)
			g.pass -= n
			return n, err
		}
		if !g.collecting {
			g.in, g.collecting = g.in[:0], true
		}
		if err := g.fill(h2FrameHeaderLen); err != nil {
			if g.keep(err) {
				return 0, err
			}
			continue
		}
		length := int(g.in[0])<<16 | int(g.in[1])<<8 | int(g.in[2])
		typ, flags := g.in[3], g.in[4]
		looked := typ == h2FrameHeaders || typ == h2FrameContinuation || typ == h2FrameSettings && flags&h2FlagAck == 0
		if g.block != 0 && typ != h2FrameContinuation || g.block == 0 && typ == h2FrameContinuation {
			// Out of sequence (RFC 9113 6.10): a connection error.
			g.off = true
		}
		if !looked || g.off || length > h2MaxFrameSize {
			g.off = g.off || looked
			g.out, g.pass, g.collecting = g.in, length, false
			continue
		}
		if err := g.fill(h2FrameHeaderLen + length); err != nil {
			if g.keep(err) {
				return 0, err
			}
			continue
		}
		g.collecting = false
		if typ == h2FrameSettings {
			g.out = dedupeSettings(g.in)
		} else {
			g.out = g.headerBlock(g.in)
		}
	}
}

// keep handles a read error in the middle of a frame: a timeout keeps
// the bytes for the next Read (true); any other error ends the
// connection, so the bytes read are handed on as they are and the error
// comes with the next read of the source (false).
func (g *h2Guard) keep(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	g.off, g.out, g.collecting = true, g.in, false
	return false
}

// fill reads until the frame being collected holds n bytes. A read error
// keeps what was read for the next call.
func (g *h2Guard) fill(n int) error {
	// The buffer grows to the largest frame looked at (a request's
	// HEADERS: hundreds of bytes), not to h2MaxFrameSize up front.
	g.in = slices.Grow(g.in, n-len(g.in))
	for len(g.in) < n {
		k, err := g.src.Read(g.in[len(g.in):n])
		g.in = g.in[:len(g.in)+k]
		if err != nil && len(g.in) < n {
			return err
		}
	}
	return nil
}

// headerBlock decodes the fragment of a HEADERS or CONTINUATION frame f
// and returns what the server gets for it.
func (g *h2Guard) headerBlock(f []byte) []byte {
	flags := f[4]
	stream := binary.BigEndian.Uint32(f[5:9]) & (1<<31 - 1)
	frag := f[h2FrameHeaderLen:]
	if f[3] == h2FrameHeaders {
		g.block, g.bad = stream, false
		pad := 0
		if flags&h2FlagPadded != 0 {
			if len(frag) < 1 {
				g.off = true
				return f
			}
			pad = int(frag[0])
			frag = frag[1:]
		}
		if flags&h2FlagPriority != 0 {
			if len(frag) < 5 {
				g.off = true
				return f
			}
			frag = frag[5:]
		}
		if pad > len(frag) {
			g.off = true
			return f
		}
		frag = frag[:len(frag)-pad]
	} else if stream != g.block {
		g.off = true
		return f
	}
	if _, err := g.dec.Write(frag); err != nil {
		g.off = true
		return f
	}
	if flags&h2FlagEndHeaders == 0 {
		return f
	}
	g.block = 0
	if err := g.dec.Close(); err != nil {
		g.off = true
		return f
	}
	if !g.bad {
		return f
	}
	// Malformed: end the block with a field the server refuses.
	out := make([]byte, 0, len(f)+h2FrameHeaderLen+len(malformedField))
	out = append(out, f...)
	out[4] &^= h2FlagEndHeaders
	out = append(out, 0, 0, byte(len(malformedField)), h2FrameContinuation, h2FlagEndHeaders)
	out = binary.BigEndian.AppendUint32(out, stream)
	return append(out, malformedField...)
}

// malformedField is an HPACK literal field without indexing (RFC 7541
// 6.2.2), new name "Malformed" (uppercase, which HTTP/2 forbids) and an
// empty value.
var malformedField = append(append([]byte{0x00, byte(len("Malformed"))}, "Malformed"...), 0x00)

// field is the decoder's emit function: it marks the block malformed on
// a connection-specific field (RFC 9113 8.2.2).
func (g *h2Guard) field(f hpack.HeaderField) {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.bad = true
	case "te":
		if f.Value != "trailers" {
			g.bad = true
		}
	}
}

// dedupeSettings returns the SETTINGS frame f with one entry per
// setting, in the order of their last occurrence: the last value, or the
// first invalid one (RFC 9113 6.5.2's bounds). A frame whose length is
// not a multiple of 6 passes as it is (the server's FRAME_SIZE_ERROR).
func dedupeSettings(f []byte) []byte {
	payload := f[h2FrameHeaderLen:]
	if len(payload)%6 != 0 || len(payload) > 6*64 {
		return f
	}
	type entry struct {
		id  uint16
		val uint32
	}
	var list []entry
	dup := false
	for i := 0; i < len(payload); i += 6 {
		e := entry{binary.BigEndian.Uint16(payload[i:]), binary.BigEndian.Uint32(payload[i+2:])}
		j := 0
		for j < len(list) && list[j].id != e.id {
			j++
		}
		if j == len(list) {
			list = append(list, e)
			continue
		}
		dup = true
		if !validSetting(list[j].id, list[j].val) {
			continue // keep the first invalid value
		}
		list = append(list[:j], list[j+1:]...)
		list = append(list, e)
	}
	if !dup {
		return f
	}
	out := make([]byte, h2FrameHeaderLen, h2FrameHeaderLen+6*len(list))
	copy(out, f[:h2FrameHeaderLen])
	n := 6 * len(list)
	out[0], out[1], out[2] = byte(n>>16), byte(n>>8), byte(n)
	for _, e := range list {
		out = binary.BigEndian.AppendUint16(out, e.id)
		out = binary.BigEndian.AppendUint32(out, e.val)
	}
	return out
}

// validSetting applies RFC 9113 6.5.2's and RFC 8441's bounds.
func validSetting(id uint16, v uint32) bool {
	switch id {
	case 0x2, 0x8: // ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL
		return v <= 1
	case 0x4: // INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 0x5: // MAX_FRAME_SIZE
		return v >= 1<<14 && v <= 1<<24-1
	}
	return true
}
