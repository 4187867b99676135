package lb

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel is an upgraded connection pair. Writes to either side happen
// under mu, so that goAway can insert a close frame between frames.
type tunnel struct {
	client, target   net.Conn
	clientR, targetR io.Reader
	ws               bool
	idle             time.Duration
	last             atomic.Int64 // unix nanos of the last byte either way

	mu         sync.Mutex
	toClient   frameTracker // target->client frames written so far
	toTarget   frameTracker
	goingAway  bool
	sentClient bool // close frame sent to the client
	sentTarget bool
	timer      *time.Timer
	closeOnce  sync.Once
	closed     chan struct{}
}

func newTunnel(client net.Conn, clientR io.Reader, target net.Conn, targetR io.Reader, ws bool, idle time.Duration) *tunnel {
	t := &tunnel{client: client, clientR: clientR, target: target, targetR: targetR, ws: ws, idle: idle, closed: make(chan struct{})}
	t.last.Store(time.Now().UnixNano())
	return t
}

// run copies both ways until both directions ended.
func (t *tunnel) run() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.copy(t.target, t.clientR, t.client, &t.toTarget, false)
	}()
	t.copy(t.client, t.targetR, t.target, &t.toClient, true)
	wg.Wait()
	t.mu.Lock()
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
}

// copy moves bytes from src (read side of conn srcConn) to dst, tracking
// frames in f. toClient selects the close frame flavour.
func (t *tunnel) copy(dst net.Conn, src io.Reader, srcConn net.Conn, f *frameTracker, toClient bool) {
	defer t.closeBoth()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if t.idle > 0 {
			srcConn.SetReadDeadline(time.Now().Add(t.idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			if t.idle > 0 {
				t.last.Store(time.Now().UnixNano()) // read only for the idle limit
			}
			if !t.forward(dst, buf[:n], f, toClient) {
				return
			}
		}
		if err != nil {
			var ne net.Error
			if t.idle > 0 && errors.As(err, &ne) && ne.Timeout() &&
				time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction is active
			}
			return
		}
	}
}

// forward writes p to dst unless a close frame was already sent that way.
// While going away it writes only up to the end of the current frame and
// then the close frame. It reports whether copying should continue.
func (t *tunnel) forward(dst net.Conn, p []byte, f *frameTracker, toClient bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	sent := &t.sentTarget
	if toClient {
		sent = &t.sentClient
	}
	if *sent {
		return false
	}
	if !t.goingAway || !t.ws {
		if t.ws {
			f.advance(p)
		}
		_, err := dst.Write(p)
		return err == nil
	}
	k, done := f.toBoundary(p)
	if _, err := dst.Write(p[:k]); err != nil {
		return false
	}
	if !done {
		return true
	}
	t.sendCloseLocked(dst, toClient)
	*sent = true
	if t.sentClient && t.sentTarget {
		t.closeBoth() // takes no lock
	}
	return false
}

// sendCloseLocked writes a close frame with status 1001; frames to the
// target are masked (client-to-server, RFC 6455 5.3).
func (t *tunnel) sendCloseLocked(dst net.Conn, toClient bool) {
	dst.SetWriteDeadline(time.Now().Add(goAwayGrace))
	dst.Write(closeFrame(!toClient))
}

func closeFrame(masked bool) []byte {
	payload := []byte{closeGoingAway >> 8, closeGoingAway & 0xff}
	payload = append(payload, "going away"...)
	if !masked {
		return append([]byte{0x88, byte(len(payload))}, payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	out := append([]byte{0x88, 0x80 | byte(len(payload))}, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// goAway ends the tunnel gracefully: a WebSocket gets a 1001 close frame
// in each direction at the next frame boundary (within goAwayGrace), then
// both connections close. Other protocols are closed at once.
func (t *tunnel) goAway() {
	t.mu.Lock()
	if t.goingAway {
		t.mu.Unlock()
		return
	}
	t.goingAway = true
	if !t.ws {
		t.mu.Unlock()
		t.closeBoth()
		return
	}
	if !t.sentClient && t.toClient.atBoundary() {
		t.sendCloseLocked(t.client, true)
		t.sentClient = true
	}
	if !t.sentTarget && t.toTarget.atBoundary() {
		t.sendCloseLocked(t.target, false)
		t.sentTarget = true
	}
	both := t.sentClient && t.sentTarget
	if !both {
		t.timer = time.AfterFunc(goAwayGrace, t.closeBoth)
	}
	t.mu.Unlock()
	if both {
		t.closeBoth()
	}
}

func (t *tunnel) closeBoth() {
	t.closeOnce.Do(func() {
		t.client.Close()
		t.target.Close()
		close(t.closed)
	})
}

// frameTracker follows WebSocket frame boundaries (RFC 6455 5.2) in a
// byte stream: a 2-14 byte header, then the payload.
type frameTracker struct {
	hdr    [14]byte
	hn     int    // header bytes collected
	remain uint64 // payload bytes left in the current frame
}

func (f *frameTracker) atBoundary() bool { return f.hn == 0 && f.remain == 0 }

// headerLen returns the full header length once the first two bytes are
// known, else 0.
func (f *frameTracker) headerLen() int {
	if f.hn < 2 {
		return 0
	}
	n := 2
	switch f.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if f.hdr[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// step consumes bytes of p within the current frame and returns how many;
// it stops right after a frame ends.
func (f *frameTracker) step(p []byte) int {
	i := 0
	if f.remain == 0 {
		for i < len(p) {
			f.hdr[f.hn] = p[i]
			f.hn++
			i++
			if need := f.headerLen(); need != 0 && f.hn == need {
				f.remain = f.payloadLen()
				f.hn = 0
				if f.remain == 0 {
					return i
				}
				break
			}
		}
	}
	if f.remain > 0 && i < len(p) {
		n := uint64(len(p) - i)
		if n > f.remain {
			n = f.remain
		}
		f.remain -= n
		i += int(n)
	}
	return i
}

func (f *frameTracker) payloadLen() uint64 {
	switch l := f.hdr[1] & 0x7f; l {
	case 126:
		return uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
	case 127:
		var v uint64
		for _, c := range f.hdr[2:10] {
			v = v<<8 | uint64(c)
		}
		return v
	default:
		return uint64(l)
	}
}

// advance consumes all of p. Frame headers that lie whole in p are
// parsed in place; only a header split across reads goes through hdr.
func (f *frameTracker) advance(p []byte) {
	for len(p) > 0 {
		if f.hn == 0 {
			if uint64(len(p)) <= f.remain {
				f.remain -= uint64(len(p))
				return
			}
			p = p[f.remain:]
			f.remain = 0
			if n, plen, ok := frameHeader(p); ok {
				p = p[n:]
				f.remain = plen
				continue
			}
		}
		p = p[f.step(p):]
	}
}

// frameHeader parses the frame header at the start of p when p holds all
// of it: its length, the payload length and true; else false.
func frameHeader(p []byte) (int, uint64, bool) {
	if len(p) < 2 {
		return 0, 0, false
	}
	n := 2
	l := uint64(p[1] & 0x7f)
	switch l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if p[1]&0x80 != 0 {
		n += 4
	}
	if len(p) < n {
		return 0, 0, false
	}
	switch l {
	case 126:
		l = uint64(p[2])<<8 | uint64(p[3])
	case 127:
		l = 0
		for _, c := range p[2:10] {
			l = l<<8 | uint64(c)
		}
	}
	return n, l, true
}

// toBoundary consumes p up to the first frame boundary and returns the
// bytes consumed and whether a boundary was reached.
func (f *frameTracker) toBoundary(p []byte) (int, bool) {
	if f.atBoundary() {
		return 0, true
	}
	k := 0
	for k < len(p) {
		k += f.step(p[k:])
		if f.atBoundary() {
			return k, true
		}
	}
	return k, false
}

// goAwayer is an open tunnel: the net/http path's (*tunnel) or an event
// loop's (*evTunnel). goAway may be called from any goroutine.
type goAwayer interface{ goAway() }

// tunnelSet tracks open tunnels, because http.Server.Shutdown does not
// see hijacked connections and the fast path's loops do not report them.
type tunnelSet struct {
	mu      sync.Mutex
	set     map[goAwayer]struct{}
	empty   chan struct{} // closed and replaced when the set becomes empty
	closing bool          // goAwayAll ran
}

func newTunnelSet() *tunnelSet {
	return &tunnelSet{set: map[goAwayer]struct{}{}, empty: make(chan struct{})}
}

// add tracks t; it returns false once goAwayAll ran (t is tracked all
// the same and must be removed).
func (s *tunnelSet) add(t goAwayer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set[t] = struct{}{}
	return !s.closing
}

func (s *tunnelSet) remove(t goAwayer) {
	s.mu.Lock()
	delete(s.set, t)
	if len(s.set) == 0 {
		close(s.empty)
		s.empty = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *tunnelSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.set)
}

// wait returns when no tunnel is open or ctx is done.
func (s *tunnelSet) wait(ctx context.Context) {
	for {
		s.mu.Lock()
		n, ch := len(s.set), s.empty
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// goAwayAll closes every open tunnel gracefully.
func (s *tunnelSet) goAwayAll() {
	s.mu.Lock()
	s.closing = true
	ts := make([]goAwayer, 0, len(s.set))
	for t := range s.set {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	for _, t := range ts {
		t.goAway()
	}
}
