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
