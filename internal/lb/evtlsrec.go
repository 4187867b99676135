package lb

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"crypto/tls"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// Our record layer (tlsrec.go) on a loop, and on the general path after a
// hand-over (recConn). An idle connection holds no buffer and no AEAD
// state: only its tlsRec's keys.

// recBufs lends the buffers that hold a record read in part; one holds
// the largest record (RFC 8446 5.2).
var recBufs = sync.Pool{New: func() any { b := make([]byte, recMaxRecord); return &b }}

// readRec is read on our record layer.
func (t *evTLS) readRec(p []byte) (int, error) {
	total := 0
	for {
		if len(t.plain) > 0 {
			n := copy(p[total:], t.plain)
			t.plain = t.plain[n:]
			if total += n; total == len(p) {
				t.full = true
				return total, nil
			}
		}
		if t.ir < t.iw {
			n, err := recordLen(t.in[t.ir:t.iw])
			if err != nil {
				return t.readFail(total, err)
			}
			if n > 0 && n <= t.iw-t.ir {
				typ, data, err := t.rec.in.open(t.in[t.ir : t.ir+n])
				t.ir += n
				answer := false
				if err == nil {
					data, answer, err = t.rec.handle(typ, data)
				}
				if err != nil {
					return t.readFail(total, err)
				}
				if answer {
					t.rec.answerUpdate = true
					if err := t.sendUpdate(); err != nil {
						return t.readFail(total, err)
					}
				}
				t.plain = data
				continue
			}
		}
		// A record is not all there: read more (plain is empty here).
		if t.in == nil {
			t.in = *recBufs.Get().(*[]byte)
		}
		if t.ir == t.iw {
			t.ir, t.iw = 0, 0
		} else if t.ir > 0 && len(t.in)-t.ir < recMaxRecord {
			t.iw = copy(t.in, t.in[t.ir:t.iw])
			t.ir = 0
		}
		n, err := netpoll.Read(t.pipe.fd, t.in[t.iw:])
		if n > 0 {
			t.iw += n
			continue
		}
		if err == netpoll.ErrAgain {
			if t.ir == t.iw {
				t.releaseIn() // idle: the buffer goes back
			}
			if total == 0 {
				return 0, netpoll.ErrAgain
			}
			return total, nil
		}
		if err == nil {
			err = io.EOF // the peer closed between records
			if t.ir < t.iw {
				err = io.ErrUnexpectedEOF
			}
		}
		return t.readFail(total, err)
	}
}

// sweep, at each of the loop's sweeps (every 20 ms), drops the AEAD
// states of a connection that used none since the last one and holds no
// record read in part nor one to send: an idle connection keeps its keys
// alone, a busy one does not build its states for each record.
func (t *evTLS) sweep() {
	r := t.rec
	if r == nil {
		return
	}
	if !r.used && t.in == nil && !t.unsent() {
		r.idle()
	}
	r.used = false
}

// readFail ends reading with err after the total bytes already read; a
// fault in the client's records is answered with its alert (RFC 8446
// 6.2).
func (t *evTLS) readFail(total int, err error) (int, error) {
	var a recAlert
	var pa peerAlert
	if errors.As(err, &a) {
		t.alert(uint8(a))
	} else if errors.As(err, &pa) {
		t.rec.ended = true // no alert answers a fatal one (RFC 8446 6.2)
	}
	if total > 0 {
		t.err = err
		return total, nil
	}
	return 0, err
}

// sendUpdate queues the KeyUpdate the client asked for (RFC 8446 4.6.3).
func (t *evTLS) sendUpdate() error {
	if t.pipe.out == nil {
		t.pipe.out = t.l.getSmall()
	}
	out, err := t.rec.sealUpdate(t.pipe.out)
	t.pipe.out = out
	if err != nil {
		return err
	}
	if err := t.send(); err != nil && err != netpoll.ErrAgain {
		return err
	}
	return nil
}

// alert queues the alert a and sends what the socket takes now; nothing
// is sent after it.
func (t *evTLS) alert(a uint8) {
	if t.rec.ended {
		return
	}
	if t.pipe.out == nil {
		t.pipe.out = t.l.getSmall()
	}
	t.pipe.out = t.rec.sealAlert(t.pipe.out, a)
	t.send()
}

// releaseIn gives the read buffer back.
func (t *evTLS) releaseIn() {
	if t != nil && t.in != nil {
		b := t.in[:cap(t.in)]
		recBufs.Put(&b)
		t.in, t.ir, t.iw, t.plain = nil, 0, 0, nil
	}
}

// recConn turns the connection into a net.Conn over our record layer on
// nc, the same socket, blocking, for the general path: what the loop
// read and did not hand out, and the records it queued, go along.
func (t *evTLS) recConn(nc net.Conn) *recConn {
	c := &recConn{Conn: nc, rec: t.rec, in: make([]byte, recMaxRecord)}
	c.plain = append([]byte(nil), t.plain...)
	c.iw = copy(c.in, t.in[t.ir:t.iw])
	c.out = append([]byte(nil), t.pipe.out...)
	t.releaseIn()
	if t.pipe.out != nil {
		t.l.putSmall(t.pipe.out)
		t.pipe.out = nil
	}
	t.rec = nil
	// Each direction has its own goroutine now: no sweep, no shared flag.
	c.rec.in.used, c.rec.out.used = nil, nil
	return c
}

// recConn is a connection on our record layer served by a goroutine:
// reads and writes may run at once (a WebSocket tunnel), each direction
// under its own lock.
type recConn struct {
	net.Conn // the socket
	rec      *tlsRec

	rmu    sync.Mutex
	in     []byte // records read: in[ir:iw] not opened yet
	ir, iw int
	plain  []byte // application data not read yet
	rerr   error  // the end of the client's records

	wmu sync.Mutex
	out []byte // records to write first (the loop's), then the write buffer
}

// errRecEnded: a write after an alert or close_notify.
var errRecEnded = errors.New("tls: connection closed")

func (c *recConn) ConnectionState() tls.ConnectionState { return *c.rec.cs }

func (c *recConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.plain) > 0 {
			n := copy(p, c.plain)
			c.plain = c.plain[n:]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		n, err := recordLen(c.in[c.ir:c.iw])
		if err == nil && n > 0 && n <= c.iw-c.ir {
			var typ byte
			var data []byte
			typ, data, err = c.rec.in.open(c.in[c.ir : c.ir+n])
			c.ir += n
			answer := false
			if err == nil {
				data, answer, err = c.rec.handle(typ, data)
			}
			if err == nil && answer {
				err = c.writeRecords(func(b []byte) ([]byte, error) {
					c.rec.answerUpdate = true
					return c.rec.sealUpdate(b)
				})
			}
			if err == nil {
				c.plain = data
				continue
			}
		}
		if err != nil {
			c.rerr = err
			var a recAlert
			var pa peerAlert
			if errors.As(err, &a) {
				c.writeRecords(func(b []byte) ([]byte, error) { return c.rec.sealAlert(b, uint8(a)), nil })
			} else if errors.As(err, &pa) {
				c.wmu.Lock()
				c.rec.ended = true // no alert answers a fatal one (RFC 8446 6.2)
				c.wmu.Unlock()
			}
			continue
		}
		if c.ir == c.iw {
			c.ir, c.iw = 0, 0
		} else if c.ir > 0 {
			c.iw = copy(c.in, c.in[c.ir:c.iw])
			c.ir = 0
		}
		k, err := c.Conn.Read(c.in[c.iw:])
		c.iw += k
		if k == 0 && err != nil {
			// Socket errors (a deadline net/http set) are not the
			// end of the records: a later read may go on.
			if err == io.EOF && c.ir < c.iw {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

func (c *recConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), maxTLSWrite)
		if err := c.writeRecords(func(b []byte) ([]byte, error) { return c.rec.sealData(b, p[:k]) }); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// writeRecords writes, after what waits, the records seal appends.
func (c *recConn) writeRecords(seal func([]byte) ([]byte, error)) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.rec.ended {
		return errRecEnded
	}
	b, err := seal(c.out)
	if err != nil {
		return err
	}
	_, err = c.Conn.Write(b)
	c.out = nil
	if cap(b) <= 2*recMaxRecord {
		c.out = b[:0]
	}
	return err
}

// Close sends a close_notify (RFC 8446 6.1) unless a write is blocked
// (the socket's close ends it), then closes the socket.
func (c *recConn) Close() error {
	if c.wmu.TryLock() {
		if !c.rec.ended {
			b := c.rec.sealAlert(c.out, alertCloseNotify)
			c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Conn.Write(b)
		}
		c.out = nil
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}
