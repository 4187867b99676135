package lb

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// HTTP/2 over TLS on the event loops (on unless Limits.DisableH2FastPath). A TLS
// connection whose ALPN is h2 moves to a loop after the handshake, as an
// HTTP/1.1 one does (evtls.go), and is served there by evH2Conn: an
// HTTP/2 server of the balancer's own, which reads and writes frames
// with golang.org/x/net/http2's Framer and header blocks with its hpack,
// over the plaintext of the loop's TLS layer. It keeps RFC 9113's
// connection rules (preface, SETTINGS and their ACK, flow control both
// ways, PING, GOAWAY, RST_STREAM, stream states, the concurrent stream
// limit) and the downgrade rules of h2guard.go (connection-specific
// fields and malformed pseudo-fields refused as stream errors,
// Content-Length checked against the DATA received).
//
// Each stream is a request. One in the fast subset becomes an HTTP/1.1
// request head in an evClient of its own (evh2stream.go), with no
// socket: ParseRequest and eligible apply the fast path's strictness
// rules to it as to any other, dispatch routes it, and the loop's pooled
// target connections carry it (retries, stickiness, metrics, access log,
// compression and the asset cache as on HTTP/1.1). The HTTP/1.1 answer
// that evClient writes is framed back as HEADERS and DATA. A stream
// outside the subset (extended CONNECT, a streaming or large body, a
// path the fast path leaves to net/http, an HTTP/2 pool, trailers ...)
// is served by the listener's handler in a goroutine, through an
// http.ResponseWriter over the stream (evh2fallback.go).

// h2 settings the loops' server advertises.
const (
	h2MaxStreams = 100     // SETTINGS_MAX_CONCURRENT_STREAMS, as HAProxy
	h2StreamWin  = 1 << 18 // SETTINGS_INITIAL_WINDOW_SIZE: a stream's receive window
	h2ConnWin    = 1 << 20 // the connection's receive window
	h2DefaultWin = 65535   // RFC 9113's initial window, before SETTINGS
	h2MaxWin     = 1<<31 - 1
	// h2MaxOut bounds the frames queued for a client that reads slowly:
	// past it, streams wait (their targets are paused).
	h2MaxOut = 256 << 10
	// h2MaxIn bounds the plaintext buffered for one header block.
	h2MaxIn = 1 << 20
)

// h2Preface is the client connection preface (RFC 9113 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// evH2Conn is an HTTP/2 client connection on a loop. All its fields
// belong to the loop's goroutine.
type evH2Conn struct {
	l       *evLoop
	fd      int
	gen     uint32
	events  netpoll.Events
	release func()
	client  netip.Addr
	ip      string
	remote  string
	tls     *evTLS
	cs      *tls.ConnectionState // for the handler's requests

	in   []byte // plaintext read; unread are in[r:w]
	r, w int
	src  bytes.Reader // the frames the framer reads
	fr   *http2.Framer
	dec  *hpack.Decoder // request header blocks (evh2hdec.go)
	blk  h2Block
	out  []byte // frames not yet encrypted
	hbuf bytes.Buffer
	enc  *hpack.Encoder

	preface  bool // the client's preface was read
	settings bool // its first SETTINGS frame was read
	streams  map[uint32]*evH2Stream
	maxID    uint32 // the highest stream the client opened
	goAway   bool   // GOAWAY sent: no new streams
	peerGone bool   // the client sent GOAWAY
	closing  bool   // close once the queued frames are out
	done     bool

	sendWin     int64 // what the client lets the server send
	recvWin     int64 // what the client may still send
	recvPending int64 // consumed, not yet granted back
	peerInitWin int64
	peerMaxFrm  uint32
	blocked     []*evH2Stream // streams waiting for window or room
	// The client's round-trip time, read at most every h2RTTAge however
	// many of its streams end meanwhile (readRTT).
	rtt   netpoll.RTT
	rttAt time.Duration
	dirty bool // in the loop's list to flush
	dl    time.Duration
}

// h2Out is the framer's writer: frames go to the connection's queue.
type h2Out struct{ c *evH2Conn }

func (o h2Out) Write(p []byte) (int, error) {
	o.c.out = append(o.c.out, p...)
	o.c.markDirty()
	return len(p), nil
}

// adoptH2 serves the connection t, whose ALPN is h2, on l.
func (l *evLoop) adoptH2(fd int, client netip.Addr, remote string, release func(), t *evTLS) {
	c := &evH2Conn{
		l: l, fd: fd, release: release, client: client, ip: client.String(), remote: remote, tls: t, cs: t.cs,
		events: netpoll.In, streams: map[uint32]*evH2Stream{},
		sendWin: h2DefaultWin, recvWin: h2DefaultWin, peerInitWin: h2DefaultWin, peerMaxFrm: 16 << 10,
	}
	gen, ok := l.register(fd, c.events, c, false, c.finalClose)
	if !ok {
		return
	}
	c.gen = gen
	if l.h2s == nil {
		l.h2s = map[*evH2Conn]struct{}{}
	}
	l.h2s[c] = struct{}{}
	c.fr = http2.NewFramer(h2Out{c}, &c.src)
	c.fr.SetMaxReadFrameSize(h2MaxFrameSize)
	c.fr.MaxHeaderListSize = uint32(l.s.lim.MaxHeaderBytes)
	c.newDecoder()
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWin},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(l.s.lim.MaxHeaderBytes)},
		http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWin-h2DefaultWin)
	c.recvWin = h2ConnWin
	c.dl = l.now + l.s.lim.HeaderTimeout
	// The handshake may have read the first records along with its last
	// message: no readiness report announces them.
	c.readable()
}

func (c *evH2Conn) setEvents(ev netpoll.Events) {
	if ev != c.events && !c.done {
		c.events = ev
		c.l.mod(c.fd, c.gen, ev)
	}
}

func (c *evH2Conn) event(ev netpoll.Events) {
	if ev&netpoll.Out != 0 {
		c.sendOut()
	}
	if !c.done && ev&(netpoll.In|netpoll.Hup|netpoll.Err) != 0 {
		c.readable()
	}
}

// readable reads and handles what the client sent.
func (c *evH2Conn) readable() {
	for range 64 { // bounded: a busy connection yields to the others
		if c.done || c.closing {
			return
		}
		if c.in == nil {
			c.in = c.l.getBuf()
		}
		if c.w == len(c.in) {
			if c.r > 0 {
				c.w = copy(c.in, c.in[c.r:c.w])
				c.r = 0
			} else if len(c.in) < h2MaxIn {
				c.in = append(c.in, make([]byte, len(c.in))...)[:2*len(c.in)]
			} else {
				c.fatal(http2.ErrCodeEnhanceYourCalm)
				return
			}
		}
		n, err := c.tls.read(c.in[c.w:])
		if n > 0 {
			c.w += n
			c.frames()
			if !c.tls.full {
				c.idleBuf()
				return
			}
			continue
		}
		if err == netpoll.ErrAgain {
			c.idleBuf()
			return
		}
		c.close()
		return
	}
	c.l.post(c.readable) // more is buffered in TLS: later, after the others
}

// idleBuf gives the read buffer back when nothing is left unread.
func (c *evH2Conn) idleBuf() {
	if c.r == c.w && cap(c.in) == bufSize {
		c.l.putBuf(c.in)
		c.in, c.r, c.w = nil, 0, 0
	}
}

// frames handles every whole frame (or header block) read.
func (c *evH2Conn) frames() {
	if !c.preface {
		n := min(c.w-c.r, len(h2Preface))
		if string(c.in[c.r:c.r+n]) != h2Preface[:n] {
			c.fatal(http2.ErrCodeProtocol)
			return
		}
		if n < len(h2Preface) {
			return
		}
		c.r += n
		c.preface = true
		c.dl = c.l.now + c.l.s.lim.ClientIdle // until its first stream
	}
	for !c.done && !c.closing {
		end := c.frameEnd(c.in[c.r:c.w])
		if end < 0 {
			return
		}
		c.src.Reset(c.in[c.r : c.r+end])
		f, err := c.fr.ReadFrame()
		c.r += end - c.src.Len()
		if err != nil {
			c.frameError(err)
			continue
		}
		if !c.settings {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.fatal(http2.ErrCodeProtocol)
				return
			}
			c.settings = true
		}
		c.handle(f)
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	if c.l.draining && !c.goAway {
		c.drain()
	}
}

// frameEnd returns the length of the frame at the start of p, or of the
// header block when it is a HEADERS frame continued: -1 when not all of
// it was read. A frame over the size limit counts as its header alone
// (the framer refuses it from that).
func (c *evH2Conn) frameEnd(p []byte) int {
	off := 0
	for {
		if len(p)-off < h2FrameHeaderLen {
			return -1
		}
		n := int(p[off])<<16 | int(p[off+1])<<8 | int(p[off+2])
		typ, flags := p[off+3], p[off+4]
		if n > h2MaxFrameSize {
			return off + h2FrameHeaderLen
		}
		if len(p)-off < h2FrameHeaderLen+n {
			return -1
		}
		off += h2FrameHeaderLen + n
		if typ != h2FrameHeaders && typ != h2FrameContinuation || flags&h2FlagEndHeaders != 0 {
			return off
		}
		// The block goes on in CONTINUATION frames; anything else after it
		// is the framer's error to find.
		if len(p)-off >= h2FrameHeaderLen && p[off+3] != h2FrameContinuation {
			return off + min(len(p)-off, h2FrameHeaderLen+int(p[off])<<16|int(p[off+1])<<8|int(p[off+2]))
		}
	}
}

// frameError answers a frame the framer refused.
func (c *evH2Conn) frameError(err error) {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		if se.StreamID > c.maxID && se.StreamID%2 == 1 {
			c.maxID = se.StreamID
		}
		c.resetStream(se.StreamID, se.Code)
	case errors.As(err, &ce):
		c.fatal(http2.ErrCode(ce))
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.fatal(http2.ErrCodeFrameSize)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		c.fatal(http2.ErrCodeProtocol)
	default:
		c.fatal(http2.ErrCodeProtocol)
	}
}

// handle acts on one frame.
func (c *evH2Conn) handle(f http2.Frame) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		c.onSettings(f)
	case *http2.HeadersFrame:
		c.onHeadersFrame(f)
	case *http2.ContinuationFrame:
		c.blockFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		c.onData(f)
	case *http2.WindowUpdateFrame:
		c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.fr.WritePing(true, f.Data)
		}
	case *http2.RSTStreamFrame:
		id := f.StreamID
		if id > c.maxID || id%2 == 0 {
			c.fatal(http2.ErrCodeProtocol) // an idle stream
			return
		}
		if st := c.streams[id]; st != nil {
			st.peerReset()
		}
	case *http2.GoAwayFrame:
		c.peerGone = true
		if len(c.streams) == 0 {
			c.closeWhenSent()
		}
	case *http2.PriorityFrame:
		if f.PriorityParam.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.PushPromiseFrame:
		c.fatal(http2.ErrCodeProtocol)
	default:
		// Unknown frame types are ignored (RFC 9113 4.1).
	}
}

func (c *evH2Conn) onSettings(f *http2.SettingsFrame) {
	if f.IsAck() {
		return
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > h2MaxWin {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrm = s.Val
		}
		return nil
	})
	if err != nil {
		c.frameError(err)
		return
	}
	c.fr.WriteSettingsAck()
	c.wake()
}

func (c *evH2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWin += inc
		if c.sendWin > h2MaxWin {
			c.fatal(http2.ErrCodeFlowControl)
			return
		}
		c.wake()
		return
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			c.fatal(http2.ErrCodeProtocol) // an idle stream
		}
		return
	}
	st.sendWin += inc
	if st.sendWin > h2MaxWin {
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
		return
	}
	c.wake()
}

func (c *evH2Conn) onData(f *http2.DataFrame) {
	id, n := f.StreamID, int64(f.Length)
	if n > c.recvWin {
		c.fatal(http2.ErrCodeFlowControl)
		return
	}
	c.recvWin -= n
	// What the connection received is granted back at once: a stream's
	// own window bounds what it holds.
	c.grantConn(n)
	st := c.streams[id]
	if st == nil {
		if id > c.maxID || id%2 == 0 {
			c.fatal(http2.ErrCodeProtocol) // an idle stream
			return
		}
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return
	}
	if st.remoteDone {
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return
	}
	if n > st.recvWin {
		c.resetStream(id, http2.ErrCodeFlowControl)
		return
	}
	st.recvWin -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		st.grant(pad)
	}
	st.onBody(data, f.StreamEnded())
}

// grantConn gives n received bytes back to the connection's window, in
// batches.
func (c *evH2Conn) grantConn(n int64) {
	c.recvPending += n
	if c.recvPending >= h2ConnWin/4 {
		c.fr.WriteWindowUpdate(0, uint32(c.recvPending))
		c.recvWin += c.recvPending
		c.recvPending = 0
	}
}

// resetStream ends stream id with code (a stream error), if it is open.
func (c *evH2Conn) resetStream(id uint32, code http2.ErrCode) {
	if id == 0 {
		c.fatal(code)
		return
	}
	c.fr.WriteRSTStream(id, code)
	if st := c.streams[id]; st != nil {
		st.localDone, st.remoteDone = true, true
		st.cancel()
	}
}

// fatal ends the connection with a connection error: GOAWAY, then close.
func (c *evH2Conn) fatal(code http2.ErrCode) {
	if c.done || c.closing {
		return
	}
	c.fr.WriteGoAway(c.maxID, code, nil)
	c.goAway = true
	for _, st := range c.streams {
		st.cancel()
	}
	c.closeWhenSent()
}

// drain sends GOAWAY (no error): the streams begun finish, no new one
// starts, and the connection closes once they are done.
func (c *evH2Conn) drain() {
	if c.goAway || c.done || c.closing {
		return
	}
	c.goAway = true
	c.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	if len(c.streams) == 0 {
		c.closeWhenSent()
	}
}

// streamEnded forgets st; a draining connection closes after its last.
func (c *evH2Conn) streamEnded(st *evH2Stream) {
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	if len(c.streams) == 0 {
		if c.goAway || c.peerGone {
			c.closeWhenSent()
		} else {
			c.dl = c.l.now + c.l.s.lim.ClientIdle
		}
	}
}

// closeWhenSent closes the connection once its queued frames are out.
func (c *evH2Conn) closeWhenSent() {
	if !c.closing {
		c.closing = true
		// A client that reads nothing more is closed anyway.
		c.dl = c.l.now + c.l.s.lim.HeaderTimeout
	}
	c.markDirty()
}

func (c *evH2Conn) markDirty() {
	if !c.dirty && !c.done {
		c.dirty = true
		c.l.h2dirty = append(c.l.h2dirty, c)
	}
}

// flushH2 sends the frames each connection queued during this round:
// one encryption and one write for all of a round's answers.
func (l *evLoop) flushH2() {
	for i := 0; i < len(l.h2dirty); i++ {
		c := l.h2dirty[i]
		l.h2dirty[i] = nil
		c.dirty = false
		if !c.done {
			c.sendOut()
		}
	}
	l.h2dirty = l.h2dirty[:0]
}

// sendOut encrypts and writes the queued frames as far as the socket
// takes them. On a closing connection the last of them (its GOAWAY)
// takes the close_notify along in the same write.
func (c *evH2Conn) sendOut() {
	o := c.out
	for {
		n, err := c.tls.write(o, c.closing)
		if err == netpoll.ErrAgain {
			break
		}
		if err != nil {
			c.close()
			return
		}
		if o = o[n:]; len(o) == 0 {
			break
		}
	}
	c.out = c.out[:copy(c.out, o)]
	if cap(c.out) > maxSmallCap && len(c.out) == 0 {
		c.out = nil
	}
	if len(c.out) > 0 || c.tls.unsent() {
		c.setEvents(c.events | netpoll.Out)
		return
	}
	c.setEvents(c.events &^ netpoll.Out)
	if c.closing {
		c.close()
		return
	}
	c.wake()
}

// room reports how much more may be queued before streams wait.
func (c *evH2Conn) room() int64 { return h2MaxOut - int64(len(c.out)) }

// wake lets the streams that waited for window or room go on.
func (c *evH2Conn) wake() {
	if len(c.blocked) == 0 || c.room() <= 0 || c.sendWin <= 0 {
		return
	}
	list := c.blocked
	c.blocked = nil
	for _, st := range list {
		st.blocked = false
		st.resume()
	}
}

// expire acts on passed deadlines: the connection's (idle, or no preface
// in time) and its streams'.
func (c *evH2Conn) expire(now time.Duration) {
	if c.done {
		return
	}
	c.tls.sweep()
	for _, st := range c.streams {
		st.expire(now)
	}
	if c.done || len(c.streams) > 0 || c.dl == 0 || now < c.dl {
		return
	}
	if !c.preface || c.closing {
		c.close()
		return
	}
	c.drain()
	c.closeWhenSent()
}

// shut ends every stream and the connection at once (Balancer close).
func (c *evH2Conn) shut() {
	for _, st := range c.streams {
		st.cancel()
	}
	c.close()
}

// close closes the connection; streams still open end with it.
func (c *evH2Conn) close() {
	if c.done {
		return
	}
	c.done = true
	for _, st := range c.streams {
		st.cancel()
	}
	c.streams = nil
	c.blocked = nil
	c.l.forget(c.fd)
	delete(c.l.h2s, c)
	c.finalClose()
}

// finalClose ends the connection with a close_notify alert before the
// FIN, as an HTTP/1.1 one (evClient's finalClose), so that a client can
// tell the end from a cut.
func (c *evH2Conn) finalClose() {
	c.done = true
	c.l.nClients.Add(-1)
	c.l.putBuf(c.in)
	c.in, c.out = nil, nil
	c.tls.closeNotify()
	c.tls.releaseIn()
	c.tls = nil
	netpoll.Close(c.fd)
	c.l.s.conns.Add(-1)
	if c.release != nil {
		c.release()
	}
	c.l.maybeResumeAccept()
}

// salvage ends the connection after a panic while handling it.
func (c *evH2Conn) salvage() { c.shut() }

// writeHeaders queues the header block in c.hbuf as HEADERS and, when it
// is larger than a frame, CONTINUATION frames.
func (c *evH2Conn) writeHeaders(id uint32, end bool) {
	blk := c.hbuf.Bytes()
	max := int(c.peerMaxFrm)
	first := blk[:min(len(blk), max)]
	blk = blk[len(first):]
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(blk) == 0})
	for len(blk) > 0 {
		k := min(len(blk), max)
		c.fr.WriteContinuation(id, k == len(blk), blk[:k])
		blk = blk[k:]
	}
	c.hbuf.Reset()
}
