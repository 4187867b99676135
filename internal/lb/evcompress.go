package lb

import (
	"github.com/shoal-dev/shoal/internal/h1"
)

// Compression on the fast path: the loop runs the body through the
// encoder into the client's buffer and writes the chunked framing itself
// (the rule is compressFor, shared with the net/http path). Compressing
// in the loop costs the loop's time, as it does nginx's workers; a
// worker would add a goroutine hand-off and a copy per read for no less
// CPU, and the per-read work is bounded by the read buffer (16 KiB).

// fieldSet marks response fields (by index in h1.Response.Fields) that
// the client's copy of the head leaves out.
type fieldSet [h1.MaxResponseFields / 64]uint64

func (s *fieldSet) add(i int)      { s[i/64] |= 1 << (i % 64) }
func (s *fieldSet) has(i int) bool { return s != nil && s[i/64]&(1<<(i%64)) != 0 }
func (s *fieldSet) clear()         { *s = fieldSet{} }

// addAt marks i when it is an index (>= 0).
func (s *fieldSet) addAt(i int) {
	if i >= 0 {
		s.add(i)
	}
}

// compressHead applies the route's compression rule to the target's head
// p (parsed in rh): it returns the coding of the body (EncIdentity for
// none), whether Vary must be added, and the kept ETag's value (nil for
// none) that the client's head gives as a weak tag; the fields the
// client's head leaves out (Content-Length and ETag when compressing) are marked in skip.
func (c *evClient) compressHead(p []byte, rh *h1.Response, skip *fieldSet) (enc Encoding, vary bool, etag []byte) {
	rule := c.ex.route.compress
	if rule.off || rh.ContentType.End <= rh.ContentType.Start || !rule.compressible(bstr(p, rh.ContentType)) {
		return EncIdentity, false, nil
	}
	accept := EncIdentity
	if sp := c.h.AcceptEncoding; sp.End != 0 {
		var a acceptEncoding
		a.add(bstr(c.buf[c.r:], sp))
		accept = a.choose()
	}
	f := answerFacts{head: c.isHead, upgrade: c.h.Upgrade, status: rh.Status, contentType: bstr(p, rh.ContentType), length: rh.ContentLength}
	etagAt, lengthAt := -1, -1
	for i, sp := range rh.Fields[:rh.NFields] {
		name, val := h1.SplitField(p[sp.Start:sp.End])
		v := bstrOf(val)
		switch {
		case h1.EqualFold(name, "content-encoding"):
			f.encoded = true
		case h1.EqualFold(name, "content-range"):
			f.ranged = true
		case h1.EqualFold(name, "cache-control"):
			f.noTransform = f.noTransform || hasToken(v, "no-transform")
		case h1.EqualFold(name, "vary"):
			f.varies = f.varies || varyCovers(v)
		case h1.EqualFold(name, "etag"):
			if etagAt < 0 {
				etagAt, etag = i, val
			}
		case h1.EqualFold(name, "content-length"):
			lengthAt = i
		case h1.EqualFold(name, "trailer"):
			f.trailers = true
		}
	}
	enc, vary = rule.compressFor(accept, &f)
	if enc == EncIdentity {
		return enc, vary, nil
	}
	skip.addAt(lengthAt)
	skip.addAt(etagAt)
	return enc, vary, etag
}

// bstrOf views b as a string without copying (see bstr).
func bstrOf(b []byte) string { return bstr(b, h1.Span{End: int32(len(b))}) }

// startCompress readies the body relay to compress with enc.
func (c *evClient) startCompress(enc Encoding) {
	c.zEnc, c.zLevel = enc, c.ex.route.compress.level
	c.z = getEncoder(enc, c.zLevel, &c.zs)
	c.dc = h1.Dechunker{}
}

// chunkHeadLen is the fixed size of the chunk-size line written before
// each compressed chunk: 8 hex digits (leading zeros are valid,
// RFC 9112 7.1) and CRLF, so the size is filled in after the encoder ran,
// without moving its output.
const chunkHeadLen = 10

// compressBody runs the body bytes in body (chunked framing included in
// rmChunked mode; a compressed answer announces no trailers, so the
// Dechunker skips any) through the encoder and queues its output as one chunk
// in c.wb. flush makes the encoder write out everything it holds (the
// target paused); end finishes the body: the encoder's end, the last
// chunk, and the encoder back to its pool.
func (c *evClient) compressBody(body []byte, flush, end bool) {
	start := len(c.wb)
	c.zs.b = append(c.wb, "00000000\r\n"...)
	var err error
	for len(body) > 0 && err == nil {
		data := body
		if c.mode == rmChunked {
			var n int
			data, n = c.dc.Next(body)
			body = body[n:]
		} else {
			body = nil
		}
		if len(data) > 0 {
			_, err = c.z.Write(data)
		}
	}
	switch {
	case end:
		err = c.z.Close()
	case flush:
		err = c.z.Flush()
	}
	if err != nil {
		// The sink cannot fail; an encoder error is a bug, not the
		// client's or the target's doing.
		panic("compress: " + err.Error())
	}
	o := c.zs.b
	c.zs.b = nil
	n := len(o) - start - chunkHeadLen
	if n == 0 {
		o = o[:start]
	} else {
		for i, v := start+7, n; i >= start; i-- {
			o[i] = "0123456789abcdef"[v&15]
			v >>= 4
		}
		o = append(o, "\r\n"...)
		c.ex.bytesOut += int64(n)
	}
	if end {
		o = append(o, "0\r\n\r\n"...)
		c.dropEncoder()
	}
	c.wb = o
}

// dropEncoder gives the answer's encoder back, if it has one.
func (c *evClient) dropEncoder() {
	if c.z != nil {
		putEncoder(c.zEnc, c.zLevel, c.z)
		c.z = nil
	}
}
