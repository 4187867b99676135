package lb

import (
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/netpoll"
)

// evH2Stream is one request of an evH2Conn: its body is buffered until
// it ends (the fast path sends whole requests), then it is served by an
// evClient of its own (c) or, outside the fast subset, by the listener's
// handler (fb).
type evH2Stream struct {
	conn *evH2Conn
	id   uint32
	hdrs []hpack.HeaderField

	method, path, authority, scheme, protocol string

	cl          int64 // the declared Content-Length; -1 when none
	bodyN       int64 // body bytes received
	body        []byte
	remoteDone  bool // the client ended its side (or the stream was reset)
	localDone   bool // the server ended its side
	sendWin     int64
	recvWin     int64
	recvPending int64
	blocked     bool
	dl          time.Duration // while its body is buffered

	c  *evClient
	fb *h2Fallback

	// The answer's conversion from the HTTP/1.1 bytes c writes.
	headSent bool
	mode     uint8 // rmNone, rmFixed or rmChunked
	dc       h1.Dechunker
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *evH2Conn) onHeaders(f *http2.MetaHeadersFrame) {
	id := f.StreamID
	if st := c.streams[id]; st != nil {
		st.onTrailers(f)
		return
	}
	if id%2 == 0 || id <= c.maxID {
		c.fatal(http2.ErrCodeProtocol)
		return
	}
	c.maxID = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.fr.WriteRSTStream(id, http2.ErrCodeProtocol) // depends on itself (RFC 9113 5.3.1)
		return
	}
	if c.goAway || c.peerGone {
		return // not processed, as GOAWAY told (RFC 9113 6.8)
	}
	if len(c.streams) >= h2MaxStreams {
		c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return
	}
	// hdrs views the connection's field list (evh2hdec.go): start and
	// fallback below read it at once; a stream that waits for its body
	// keeps a copy.
	st := c.l.newStream()
	*st = evH2Stream{conn: c, id: id, sendWin: c.peerInitWin, recvWin: h2StreamWin, cl: -1, hdrs: f.Fields, body: st.body[:0]}
	if !st.parse(f) {
		c.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		return
	}
	c.streams[id] = st
	c.dl = 0
	if f.Truncated {
		st.hdrs = nil
		st.answerStatus(431) // as net/http: Request Header Fields Too Large
		return
	}
	if f.StreamEnded() {
		st.remoteDone = true
		st.start()
		st.hdrs = nil
		return
	}
	if st.method == "CONNECT" || st.cl < 0 || st.cl > bufSize/2 {
		// A tunnel, or a body of unknown or large size: streamed.
		st.fallback()
		st.hdrs = nil
		return
	}
	// The body comes later: the fields outlive the block's reused list.
	st.hdrs = slices.Clone(st.hdrs)
	st.dl = c.l.now + c.l.s.lim.HeaderTimeout
}

// parse checks the request's fields as x/net's server and h2guard.go do
// (RFC 9113 8.2 and 8.3; the framer checked names, values and the
// pseudo-fields' order and repeats), and keeps its pseudo-fields.
func (st *evH2Stream) parse(f *http2.MetaHeadersFrame) bool {
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			st.method = hf.Value
		case ":path":
			st.path = hf.Value
		case ":authority":
			st.authority = hf.Value
		case ":scheme":
			st.scheme = hf.Value
		case ":protocol":
			st.protocol = hf.Value
		default:
			return false // :status
		}
	}
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return false
		case "te":
			if hf.Value != "trailers" {
				return false
			}
		case "content-length":
			v, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || v < 0 || st.cl >= 0 && st.cl != v {
				return false
			}
			st.cl = v
		}
	}
	switch {
	case st.method == "":
		return false
	case st.method == "CONNECT" && st.protocol == "":
		return st.authority != "" && st.path == "" && st.scheme == ""
	default:
		return st.path != "" && st.scheme != "" && (st.protocol == "" || st.method == "CONNECT")
	}
}

// onBody takes DATA the client sent on the stream.
func (st *evH2Stream) onBody(data []byte, end bool) {
	st.bodyN += int64(len(data))
	if st.cl >= 0 && (st.bodyN > st.cl || end && st.bodyN != st.cl) {
		st.conn.resetStream(st.id, http2.ErrCodeProtocol)
		return
	}
	if end {
		st.remoteDone = true
	}
	switch {
	case st.fb != nil:
		st.fb.takeBody(data, end)
	case st.c != nil:
		st.grant(int64(len(data))) // after the request began: not kept
	default:
		st.body = append(st.body, data...)
		if len(st.body) > bufSize/2 {
			st.fallback()
			return
		}
		st.grant(int64(len(data)))
		if end {
			st.start()
		}
	}
}

// onTrailers takes a header block after the request's head.
func (st *evH2Stream) onTrailers(f *http2.MetaHeadersFrame) {
	switch {
	case st.remoteDone:
		st.conn.resetStream(st.id, http2.ErrCodeStreamClosed)
	case !f.StreamEnded() || len(f.PseudoFields()) > 0:
		st.conn.resetStream(st.id, http2.ErrCodeProtocol)
	case st.cl >= 0 && st.bodyN != st.cl:
		st.conn.resetStream(st.id, http2.ErrCodeProtocol)
	default:
		if st.fb == nil && st.c == nil {
			st.fallback() // the handler passes trailers on
		}
		if st.fb != nil {
			st.fb.takeTrailers(f.RegularFields())
		}
		st.onBody(nil, true)
	}
}

// grant gives n bytes the stream consumed back to its window, in
// batches, while the client may still send.
func (st *evH2Stream) grant(n int64) {
	if st.remoteDone || n <= 0 {
		return
	}
	st.recvPending += n
	if st.recvPending >= h2StreamWin/4 {
		st.conn.fr.WriteWindowUpdate(st.id, uint32(st.recvPending))
		st.recvWin += st.recvPending
		st.recvPending = 0
	}
}

// start serves the whole request on the fast path: its HTTP/1.1 form in
// the buffer of a socketless evClient, which applies the fast subset's
// rules and hands anything outside it back (handoff, to fallback).
func (st *evH2Stream) start() {
	conn := st.conn
	l := conn.l
	c, ok := popFree(&l.h2spare)
	if ok {
		// The per-connection scratch stays warm: the cache key's buffer,
		// and the Forwarded element when it was made for the same client.
		ckey, fwdHost, fwd, client := c.ckey[:0], c.fwdHost, c.fwd, c.client
		*c = evClient{ckey: ckey, fwdHost: fwdHost}
		if client == conn.client {
			c.fwd = fwd
		}
	} else {
		c = new(evClient)
	}
	c.l, c.fd, c.client, c.ip, c.remote, c.h2 = l, -1, conn.client, conn.ip, conn.remote, st
	// The request's state, which freeBufs (freeClient) gives back.
	c.evReq = l.getReq()
	st.c = c
	// Most requests fit a small buffer; the head's spans index it until
	// the answer is complete.
	b := l.getSmall()
	b = b[:cap(b)]
	head := st.appendHead(b[:0])
	if len(head)+len(st.body) > len(b) {
		l.putSmall(b)
		b = l.getBuf()
		head = st.appendHead(b[:0])
		if len(head)+len(st.body) > len(b) {
			l.putBuf(b)
			st.c = nil
			st.fallback()
			return
		}
	}
	n := len(head) + copy(b[len(head):], st.body)
	c.buf, c.r, c.w = b, 0, n
	c.serveNext()
}

// maxH2Spare bounds the evClients a loop keeps for its streams.
const maxH2Spare = 256

// freeClient gives the buffers of the stream's evClient back; a small
// request buffer goes to the small ones.
func (st *evH2Stream) freeClient() {
	c := st.c
	c.state = csDone
	if cap(c.buf) != bufSize {
		c.l.putSmall(c.buf)
		c.buf = nil
	}
	c.freeBufs()
}

// appendHead appends the request's HTTP/1.1 head to o.
func (st *evH2Stream) appendHead(o []byte) []byte {
	o = append(o, st.method...)
	o = append(o, ' ')
	o = append(o, st.path...)
	o = append(o, " HTTP/1.1\r\n"...)
	if st.authority != "" {
		o = append(o, "Host: "...)
		o = append(o, st.authority...)
		o = append(o, "\r\n"...)
	}
	cookies := 0
	for _, hf := range st.hdrs {
		switch {
		case hf.Name[0] == ':', hf.Name == "content-length", hf.Name == "host" && st.authority != "":
			continue
		case hf.Name == "cookie":
			// HTTP/2 splits Cookie; HTTP/1.1 sends one (RFC 9113 8.2.3).
			if cookies == 0 {
				o = append(o, "Cookie: "...)
			} else {
				o = append(o, "; "...)
			}
			o = append(o, hf.Value...)
			cookies++
			continue
		}
		if cookies > 0 && cookies < 1<<20 {
			o = append(o, "\r\n"...)
			cookies = 1 << 20 // the Cookie line is closed
		}
		o = append(o, hf.Name...)
		o = append(o, ": "...)
		o = append(o, hf.Value...)
		o = append(o, "\r\n"...)
	}
	if cookies > 0 && cookies < 1<<20 {
		o = append(o, "\r\n"...)
	}
	if st.bodyN > 0 || st.cl >= 0 {
		o = append(o, "Content-Length: "...)
		o = strconv.AppendInt(o, st.bodyN, 10)
		o = append(o, "\r\n"...)
	}
	return append(o, "\r\n"...)
}

// write frames the HTTP/1.1 answer bytes p that the stream's evClient
// writes: its head as HEADERS, its body as DATA within the flow-control
// windows. last says p ends the answer. It returns the bytes of p taken,
// or netpoll.ErrAgain when none could be (the stream waits for window or
// room; the evClient pauses its target meanwhile).
func (st *evH2Stream) write(p []byte, last bool) (int, error) {
	c := st.conn
	if c.done {
		return 0, errClientWrite
	}
	if st.localDone {
		return len(p), nil // a body after a head that ended the stream
	}
	if c.room() <= 0 {
		st.block()
		return 0, netpoll.ErrAgain
	}
	took := 0
	if !st.headSent {
		n := h1.HeadEnd(p, 0)
		if n < 0 {
			return 0, h1.ErrBadResponse // the evClient queues heads whole
		}
		st.writeHead(p[:n], last && n == len(p))
		if st.localDone {
			return len(p), nil
		}
		took = n
	}
	q := p[took:]
	var pend []byte
	for len(q) > 0 && !st.localDone {
		w := min(c.sendWin, st.sendWin, c.room(), int64(len(q)))
		if w <= 0 {
			break
		}
		var data []byte
		switch st.mode {
		case rmFixed:
			data, q = q[:w], q[w:]
			took += int(w)
		case rmChunked:
			var n int
			data, n = st.dc.Next(q[:w])
			q = q[n:]
			took += n
		default:
			took += len(q) // no body: nothing to frame
			q = nil
		}
		if len(data) > 0 {
			if pend != nil {
				st.data(pend, false)
			}
			pend = data
			c.sendWin -= int64(len(data))
			st.sendWin -= int64(len(data))
		}
	}
	if !st.localDone && (pend != nil || last && len(q) == 0) {
		st.data(pend, last && len(q) == 0)
	}
	if took == 0 {
		st.block()
		return 0, netpoll.ErrAgain
	}
	return took, nil
}

// data queues b as DATA frames; end ends the stream with the last.
func (st *evH2Stream) data(b []byte, end bool) {
	fr := st.conn.fr
	max := int(st.conn.peerMaxFrm)
	for len(b) > max {
		fr.WriteData(st.id, false, b[:max])
		b = b[max:]
	}
	fr.WriteData(st.id, end, b)
	if end {
		st.localDone = true
	}
}

// h2RTTAge is how long a connection's round-trip time read from the
// kernel serves its streams before it is read again: the kernel's own
// estimate is smoothed over many round trips, and a busy connection ends
// streams in nearly every loop round.
const h2RTTAge = 50 * time.Millisecond

// readRTT returns the connection's round-trip time (rtt.go), read at
// most every h2RTTAge.
func (c *evH2Conn) readRTT() netpoll.RTT {
	if c.rttAt == 0 || c.l.now-c.rttAt >= h2RTTAge {
		c.rtt, _ = netpoll.TCPRTT(c.fd)
		c.rttAt = c.l.now
	}
	return c.rtt
}

// answerStatus answers the stream with status alone and ends it.
func (st *evH2Stream) answerStatus(status int) {
	st.conn.enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	st.conn.writeHeaders(st.id, true)
	st.localDone = true
	st.finish()
}

// block makes the stream wait for window or room.
func (st *evH2Stream) block() {
	if !st.blocked {
		st.blocked = true
		st.conn.blocked = append(st.conn.blocked, st)
	}
}

// resume goes on writing after the stream waited.
func (st *evH2Stream) resume() {
	switch {
	case st.c != nil && st.c.state == csBusy:
		st.c.flush()
	case st.fb != nil:
		st.fb.pump()
	}
}

// complete ends the stream whose answer the evClient wrote whole (the
// evClient's complete).
func (st *evH2Stream) complete() {
	c := st.c
	ex := &c.ex
	ex.rtt = st.conn.readRTT()
	c.l.s.b.record(ex)
	st.freeClient()
	if !st.localDone {
		st.data(nil, true)
	}
	st.finish()
	// Done cleanly, as an HTTP/1.1 connection's evClient between two
	// requests: nothing refers to it any more.
	st.c = nil
	l := c.l
	if len(l.h2spare) < maxH2Spare {
		l.h2spare = append(l.h2spare, c)
	}
	// The stream too, unless it is still in its connection's list of
	// waiting ones.
	if !st.blocked && len(l.h2free) < maxH2Spare {
		st.conn, st.hdrs = nil, nil
		if cap(st.body) > smallCap {
			st.body = nil
		}
		l.h2free = append(l.h2free, st)
	}
}

// newStream returns a stream state to fill: one that ended, or a new one.
func (l *evLoop) newStream() *evH2Stream {
	if st, ok := popFree(&l.h2free); ok {
		return st
	}
	return new(evH2Stream)
}

// popFree takes the last element off a loop's free list, if any.
func popFree[T any](list *[]T) (T, bool) {
	var zero T
	n := len(*list)
	if n == 0 {
		return zero, false
	}
	v := (*list)[n-1]
	(*list)[n-1] = zero
	*list = (*list)[:n-1]
	return v, true
}

// clientClosed ends the stream whose evClient closed before its answer
// was complete (a target that broke mid-answer, a client that stopped
// reading): RST_STREAM, and the connection goes on.
func (st *evH2Stream) clientClosed() {
	st.freeClient()
	if !st.localDone && !st.conn.done {
		st.conn.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
		st.localDone = true
	}
	st.finish()
}

// finish forgets the stream once the server's side ended; a client still
// sending is told to stop (RFC 9113 8.1).
func (st *evH2Stream) finish() {
	if !st.remoteDone && !st.conn.done {
		st.conn.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		st.remoteDone = true
	}
	st.conn.streamEnded(st)
}

// peerReset ends the stream the client reset.
func (st *evH2Stream) peerReset() {
	st.localDone, st.remoteDone = true, true
	st.cancel()
}

// cancel ends whatever serves the stream, and forgets it.
func (st *evH2Stream) cancel() {
	st.localDone, st.remoteDone = true, true
	switch {
	case st.c != nil:
		if st.c.state != csDone {
			st.c.abort(errClientGone)
		}
	case st.fb != nil:
		st.fb.cancel()
	}
	st.conn.streamEnded(st)
}

// expire acts on the stream's passed deadlines.
func (st *evH2Stream) expire(now time.Duration) {
	switch {
	case st.c != nil:
		if st.c.state != csDone {
			st.c.expire(now)
		}
	case st.fb == nil && st.dl != 0 && now >= st.dl:
		// A body slower than the header timeout is streamed instead.
		st.fallback()
	}
}

// handoff serves the stream through the handler: its request is outside
// the fast subset (the evClient's handoff).
func (st *evH2Stream) handoff() {
	st.freeClient()
	st.c = nil
	st.fallback()
}
