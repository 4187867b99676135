package lb

import (
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Request header blocks on the loops. The framer hands HEADERS and
// CONTINUATION frames over as they are (no ReadMetaHeaders: it would
// allocate a frame, a closure and a growing field list for every
// request), and the connection decodes their fragments with its own
// hpack.Decoder into a field list it reuses, checking each field as
// x/net's Framer.readMetaFrame does: values free of control bytes, names
// lower-case tokens, pseudo-fields first and known, the list within
// MaxHeaderListSize (past it the block is Truncated and answered 431),
// a fragment far past it a connection error. frameEnd (evh2.go) keeps a
// block's frames together in the read buffer, so a block is decoded
// whole within one call of frames.

// h2Block is the header block being decoded.
type h2Block struct {
	hf     *http2.HeadersFrame // its HEADERS frame; nil between blocks
	fields []hpack.HeaderField // reused: valid until the next block
	limit  uint32              // MaxHeaderListSize
	// bad: a field x/net's framer refuses (a stream error once the
	// block is decoded; a connection error if a CONTINUATION follows).
	bad        bool
	sawRegular bool
	truncated  bool
	// What the field list may still hold, trailer names counted apart.
	remain, trailRemain uint32
	mh                  http2.MetaHeadersFrame
}

// newDecoder makes the connection's HPACK decoder.
func (c *evH2Conn) newDecoder() {
	c.blk.limit = c.fr.MaxHeaderListSize
	if c.blk.limit == 0 {
		c.blk.limit = 16 << 20 // x/net's default
	}
	c.dec = hpack.NewDecoder(h2DecoderTableSize, c.emit)
	c.dec.SetMaxStringLength(int(c.blk.limit))
}

// onHeadersFrame begins a header block.
func (c *evH2Conn) onHeadersFrame(f *http2.HeadersFrame) {
	b := &c.blk
	b.hf = f
	b.fields = b.fields[:0]
	b.bad, b.sawRegular, b.truncated = false, false, false
	b.remain, b.trailRemain = b.limit, b.limit
	c.dec.SetEmitEnabled(true)
	c.blockFragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// blockFragment decodes a fragment of the block; end says it is the
// last, and the block is then handled as a request's head or trailers.
func (c *evH2Conn) blockFragment(frag []byte, end bool) {
	b := &c.blk
	if b.hf == nil {
		c.fatal(http2.ErrCodeProtocol) // the framer keeps the order: not seen
		return
	}
	// Far past the list's size, or a CONTINUATION after a refused field:
	// the block is not decoded further (as readMetaFrame).
	if int64(len(frag)) > 2*int64(b.remain+b.trailRemain) || b.bad {
		b.hf = nil
		c.fatal(http2.ErrCodeProtocol)
		return
	}
	if _, err := c.dec.Write(frag); err != nil {
		b.hf = nil
		c.fatal(http2.ErrCodeCompression)
		return
	}
	if !end {
		return
	}
	hf := b.hf
	b.hf = nil
	if err := c.dec.Close(); err != nil {
		c.fatal(http2.ErrCodeCompression)
		return
	}
	if b.bad || !h2PseudosValid(b.fields) {
		c.frameError(http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol})
		return
	}
	b.mh = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: b.fields, Truncated: b.truncated}
	c.onHeaders(&b.mh)
	b.mh = http2.MetaHeadersFrame{}
}

// emit takes one decoded field of the block.
func (c *evH2Conn) emit(hf hpack.HeaderField) {
	b := &c.blk
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.bad = true
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.bad = true
		}
	} else {
		b.sawRegular = true
		if !h2WireName(hf.Name) {
			b.bad = true
		}
	}
	if b.bad {
		c.dec.SetEmitEnabled(false)
		return
	}
	remain, size := &b.remain, hf.Size()
	if hf.Name == "trailer" {
		// As readMetaFrame: each name a trailer announces counts as a
		// field's overhead.
		n := uint32(strings.Count(hf.Value, ",") + 1)
		remain, size = &b.trailRemain, uint32(len(hf.Value))-n+1+n*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		c.dec.SetEmitEnabled(false)
		b.truncated = true
		b.remain, b.trailRemain = 0, 0
		return
	}
	*remain -= size
	b.fields = append(b.fields, hf)
}

// h2WireName reports whether name is a valid HTTP/2 field name: a token,
// lower-case.
func h2WireName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// h2PseudosValid reports whether the pseudo-fields at the start of
// fields are known, not repeated, and not a request's and an answer's
// mixed.
func h2PseudosValid(fields []hpack.HeaderField) bool {
	var req, resp bool
	for i, hf := range fields {
		if !strings.HasPrefix(hf.Name, ":") {
			break
		}
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			req = true
		case ":status":
			resp = true
		default:
			return false
		}
		for _, prev := range fields[:i] {
			if prev.Name == hf.Name {
				return false
			}
		}
	}
	return !(req && resp)
}
