package lb

import (
	"bytes"
	"unsafe"

	"golang.org/x/net/http2/hpack"
)

// An answer's head on HTTP/2: the HTTP/1.1 head the stream's evClient
// wrote, as an HPACK block.

// h2Interned keeps the strings of the answer field names and values a
// loop framed, so that framing the same field again (Content-Type, the
// Date of this second, a Content-Length seen before) allocates nothing:
// the HPACK encoder keeps the strings it indexes, so they must be the
// loop's own. It forgets everything when it holds maxH2Interned.
type h2Interned struct{ m map[string]string }

const (
	maxH2Interned = 1024
	// maxH2InternLen: longer values are seldom repeated; each is copied.
	maxH2InternLen = 128
)

// get returns b as a string that stays valid.
func (t *h2Interned) get(b []byte) string {
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) > maxH2InternLen {
		return s
	}
	if t.m == nil || len(t.m) >= maxH2Interned {
		t.m = make(map[string]string, 64)
	}
	t.m[s] = s
	return s
}

// h2HopFields are the fields of an HTTP/1.1 answer that HTTP/2 does not
// carry (RFC 9113 8.2.2).
var h2HopFields = map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true, "upgrade": true}

// h2Names interns the lower-case names of common answer fields, so that
// framing them allocates no name.
var h2Names = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"content-type", "content-length", "date", "server", "x-request-id", "cache-control", "etag", "last-modified", "vary", "content-encoding", "set-cookie", "location", "expires", "accept-ranges", "age", "x-content-type-options", "retry-after", "strict-transport-security"} {
		m[n] = n
	}
	return m
}()

// writeHead queues the answer's head p (HTTP/1.1, as the evClient wrote
// it) as a HEADERS block; end ends the stream (no body follows).
func (st *evH2Stream) writeHead(p []byte, end bool) {
	c := st.conn
	st.headSent = true
	status := p[9:12]
	enc := c.enc
	vals := &c.l.h2vals
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: h2Status(status)})
	st.mode = rmNone
	hasLen := false
	i := bytes.IndexByte(p, '\n') + 1
	var lower [64]byte
	for i < len(p)-2 {
		j := bytes.IndexByte(p[i:], '\n')
		line := p[i : i+j]
		i += j + 1
		line = bytes.TrimSuffix(line, []byte{'\r'})
		k := bytes.IndexByte(line, ':')
		if k <= 0 {
			continue
		}
		rawName, val := line[:k], bytes.TrimSpace(line[k+1:])
		ln := lower[:0]
		if len(rawName) <= len(lower) {
			for _, b := range rawName {
				if 'A' <= b && b <= 'Z' {
					b += 'a' - 'A'
				}
				ln = append(ln, b)
			}
		} else {
			ln = bytes.ToLower(rawName)
		}
		if h2HopFields[string(ln)] {
			if string(ln) == "transfer-encoding" && bytes.Contains(val, []byte("chunked")) {
				st.mode = rmChunked
			}
			continue
		}
		switch string(ln) {
		case "content-length":
			hasLen = true
		case "x-request-id":
			// Unique to each answer: never indexed (it would only push
			// useful entries out of the client's table), so the encoder
			// keeps nothing and the value needs no copy.
			if len(val) > 0 {
				enc.WriteField(hpack.HeaderField{Name: "x-request-id", Value: unsafe.String(&val[0], len(val)), Sensitive: true})
				continue
			}
		}
		name, ok := h2Names[string(ln)]
		if !ok {
			name = vals.get(ln)
		}
		enc.WriteField(hpack.HeaderField{Name: name, Value: vals.get(val)})
	}
	code := string(status)
	if st.mode == rmNone && hasLen {
		st.mode = rmFixed
	}
	if st.c != nil && st.c.isHead || code == "204" || code == "304" {
		st.mode = rmNone
	}
	end = end || st.mode == rmNone
	c.writeHeaders(st.id, end)
	if end {
		st.localDone = true
	}
}

// h2Status returns the :status value for the three digits s, without
// allocating for the common ones.
func h2Status(s []byte) string {
	switch string(s) {
	case "200":
		return "200"
	case "304":
		return "304"
	case "404":
		return "404"
	case "502":
		return "502"
	}
	return string(s)
}
