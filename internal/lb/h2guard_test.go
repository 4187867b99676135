package lb

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Peer is a hand-driven HTTP/2 client connection (x/net's Framer).
type h2Peer struct {
	t    *testing.T
	c    *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialH2(t *testing.T, addr string, cert *x509.Certificate) *h2Peer {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds every read below
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	p := &h2Peer{t: t, c: c, fr: http2.NewFramer(c, c)}
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return p
}

// headers sends a request's HEADERS (ending the stream) on stream id
// with the regular fields extra after the pseudo-fields; its encoder
// indexes fields, so later blocks depend on the server's table.
func (p *h2Peer) headers(id uint32, extra ...string) {
	p.t.Helper()
	p.hbuf.Reset()
	fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/"}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next frame about stream id (or the connection's end),
// answering what the server says on stream 0 along the way.
func (p *h2Peer) next(id uint32) http2.Frame {
	p.t.Helper()
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				p.fr.WriteSettingsAck()
			}
			continue
		case *http2.WindowUpdateFrame, *http2.PingFrame:
			continue
		case *http2.GoAwayFrame:
			return f
		}
		if f.Header().StreamID == id {
			return f
		}
	}
}

// TestH2GuardStrict: over a real TLS connection, what h2spec's strict
// cases check: repeated settings are acknowledged and the last one
// holds; a request with a connection-specific field or TE other than
// trailers gets RST_STREAM PROTOCOL_ERROR and the connection serves the
// next request (its HPACK state intact); a HEADERS frame over 16 KiB
// ends the connection with FRAME_SIZE_ERROR.
func TestH2GuardStrict(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{ca}
	lb := start(t, cfg)

	p := dialH2(t, lb.addr, cert)
	p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	p.headers(1)
	// The window the server may use is the last value: 1 byte of "ok".
	f := p.next(1)
	if h, ok := f.(*http2.MetaHeadersFrame); !ok || h.PseudoValue("status") != "200" {
		t.Fatalf("stream 1: %v, want a 200", f)
	}
	if d, ok := p.next(1).(*http2.DataFrame); !ok || string(d.Data()) != "o" {
		t.Fatalf("stream 1: want DATA of 1 byte under a window of 1, got %v", d)
	}
	p.fr.WriteRSTStream(1, http2.ErrCodeCancel)

	id := uint32(3)
	for _, bad := range [][]string{
		{"connection", "keep-alive"}, {"keep-alive", "5"}, {"proxy-connection", "x"},
		{"transfer-encoding", "chunked"}, {"upgrade", "websocket"}, {"te", "gzip"},
	} {
		p.headers(id, bad...)
		if rst, ok := p.next(id).(*http2.RSTStreamFrame); !ok || rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("%s: %v, want RST_STREAM PROTOCOL_ERROR", bad[0], rst)
		}
		id += 2
		p.headers(id, "x-after", bad[0]) // indexed fields from the refused block
		if h, ok := p.next(id).(*http2.MetaHeadersFrame); !ok || h.PseudoValue("status") != "200" {
			t.Fatalf("after %s: %v, want a 200 on the same connection", bad[0], h)
		}
		id += 2
	}
	p.headers(id, "te", "trailers")
	if h, ok := p.next(id).(*http2.MetaHeadersFrame); !ok || h.PseudoValue("status") != "200" {
		t.Fatalf("te: trailers: %v, want a 200", h)
	}

	q := dialH2(t, lb.addr, cert)
	big := strings.Repeat("x", 4000)
	q.hbuf.Reset()
	q.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	q.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "https"})
	q.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "a.test"})
	q.enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
	for i := range 5 {
		q.enc.WriteField(hpack.HeaderField{Name: "x-dummy" + string(rune('0'+i)), Value: big})
	}
	if q.hbuf.Len() <= h2MaxFrameSize {
		t.Fatalf("block of %d bytes is not over the frame size", q.hbuf.Len())
	}
	q.fr.SetMaxReadFrameSize(1 << 20)
	q.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: q.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	f = q.next(1)
	if ga, ok := f.(*http2.GoAwayFrame); !ok || ga.ErrCode != http2.ErrCodeFrameSize {
		t.Fatalf("oversized HEADERS: %v, want GOAWAY FRAME_SIZE_ERROR", f)
	}
}

// TestDedupeSettings: one entry per setting, the last value unless an
// earlier one is invalid; frames without repeats or of a bad length pass
// as they are.
func TestDedupeSettings(t *testing.T) {
	frame := func(s ...http2.Setting) []byte {
		var b bytes.Buffer
		http2.NewFramer(&b, nil).WriteSettings(s...)
		return b.Bytes()
	}
	iw, mfs := http2.SettingInitialWindowSize, http2.SettingMaxFrameSize
	for _, tc := range []struct {
		name    string
		in, out []byte
	}{
		{"no repeat", frame(http2.Setting{ID: iw, Val: 1}, http2.Setting{ID: mfs, Val: 1 << 14}), frame(http2.Setting{ID: iw, Val: 1}, http2.Setting{ID: mfs, Val: 1 << 14})},
		{"last wins", frame(http2.Setting{ID: iw, Val: 100}, http2.Setting{ID: mfs, Val: 1 << 15}, http2.Setting{ID: iw, Val: 1}), frame(http2.Setting{ID: mfs, Val: 1 << 15}, http2.Setting{ID: iw, Val: 1})},
		{"first invalid kept", frame(http2.Setting{ID: iw, Val: 1 << 31}, http2.Setting{ID: iw, Val: 1}), frame(http2.Setting{ID: iw, Val: 1 << 31})},
		{"bad length", append(frame(http2.Setting{ID: iw, Val: 1}), 0), nil},
	} {
		in := tc.in
		if tc.out == nil { // length field 7: not a multiple of 6
			in[2] = 7
			tc.out = in
		}
		if got := dedupeSettings(in); !bytes.Equal(got, tc.out) {
			t.Errorf("%s: % x, want % x", tc.name, got, tc.out)
		}
	}
}

// FuzzH2Guard feeds a client's byte stream through the guard: it never
// panics, it hands on every byte of a stream without SETTINGS or header
// blocks unchanged and in order, whatever the read sizes, and it ends
// with the input.
func FuzzH2Guard(f *testing.F) {
	frames := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		b.WriteString(http2.ClientPreface)
		write(http2.NewFramer(&b, nil))
		return b.Bytes()
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":path", "/"}, {"connection", "close"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	block := hb.Bytes()
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3], EndStream: true})
		fr.WriteContinuation(1, true, block[3:])
		fr.WriteData(1, true, []byte("body"))
	}), uint8(7))
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block, EndHeaders: true, PadLength: 4, Priority: http2.PriorityParam{Weight: 9}})
		fr.WritePing(false, [8]byte{1})
		fr.WriteSettingsAck()
	}), uint8(1))
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteData(1, false, bytes.Repeat([]byte("d"), 20000))
		fr.WriteWindowUpdate(0, 100)
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
	}), uint8(200))
	f.Add([]byte(http2.ClientPreface+"\x00\x00\x01\x09\x04\x00\x00\x00\x01x"), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		g := &h2Guard{src: &chunkReader{b: in, n: int(step%64) + 1}, pass: h2PrefaceLen}
		g.dec = hpack.NewDecoder(h2DecoderTableSize, g.field)
		var out []byte
		buf := make([]byte, int(step)+1)
		for range 4*len(in) + 16 {
			n, err := g.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !hasLookedFrames(in) && !bytes.Equal(out, in) {
			t.Fatalf("stream without SETTINGS or headers changed:\n in % x\nout % x", in, out)
		}
	})
}

// chunkReader reads b n bytes at a time, then io.EOF.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n, len(r.b))
	copy(p, r.b[:k])
	r.b = r.b[k:]
	return k, nil
}

// hasLookedFrames reports whether the frames after the preface in b
// include one the guard may change (SETTINGS, HEADERS, CONTINUATION).
func hasLookedFrames(b []byte) bool {
	if len(b) < h2PrefaceLen {
		return false
	}
	b = b[h2PrefaceLen:]
	for len(b) >= h2FrameHeaderLen {
		switch b[3] {
		case h2FrameHeaders, h2FrameSettings, h2FrameContinuation:
			return true
		}
		n := h2FrameHeaderLen + (int(b[0])<<16 | int(b[1])<<8 | int(b[2]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}
