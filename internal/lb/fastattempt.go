package lb

import (
	"io"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// One attempt of a fast-path request on one target connection: write the
// head (and body), read the response head, hand over to relay.

// maxResponseHead is the largest response head relayed, as on the
// net/http path (Transport.MaxResponseHeaderBytes).
const maxResponseHead = 1 << 20

// fastAttempt sends the request to t over uc and relays the response.
func (b *Balancer) fastAttempt(fc *fastConn, ex *exchange, pe *poolEntry, t *pool.Target, uc *upConn, bodyInBuf int64, bodyUsed *bool) error {
	h := &fc.h
	// A drain deadline on the target ends this attempt: the deadline in
	// the past fails the connection's pending and future I/O.
	tctx := t.Context()
	uc.watch(tctx)
	cut := func(err error) error {
		if tctx.Err() != nil {
			return pool.ErrDrainDeadline
		}
		return err
	}
	// Head and the body bytes already read, in one write when they fit.
	o := fc.out
	bodyStart := fc.r + h.size
	small := bodyInBuf > 0 && len(o)+int(bodyInBuf) <= cap(o)
	if small {
		o = append(o, fc.buf[bodyStart:bodyStart+int(bodyInBuf)]...)
	}
	now := time.Now()
	uc.c.SetDeadline(now.Add(pe.cfg.TryTimeout))
	if tctx.Err() != nil {
		// The drain deadline passed before the deadline above was set.
		uc.close()
		return pool.ErrDrainDeadline
	}
	if _, err := uc.c.Write(o); err != nil {
		uc.close()
		return cut(err)
	}
	if h.clen > 0 {
		*bodyUsed = true
		if !small && bodyInBuf > 0 {
			if _, err := uc.c.Write(fc.buf[bodyStart : bodyStart+int(bodyInBuf)]); err != nil {
				uc.close()
				return cut(err)
			}
		}
		if rest := h.clen - bodyInBuf; rest > 0 {
			if err := fc.copyBody(uc, rest); err != nil {
				uc.close()
				return cut(err)
			}
		}
	}
	ex.wrote = now
	if h.clen > bodyInBuf {
		ex.wrote = time.Now() // after the streamed body
	}
	// Response head.
	var hn int
	for {
		hn = -1
		for {
			if n := headEnd(uc.buf[uc.r:uc.w], 0); n > 0 {
				hn = n
				break
			}
			if uc.w == len(uc.buf) {
				if len(uc.buf) >= maxResponseHead {
					uc.close()
					return errBadResponse
				}
				// A big head: grow, up to the net/http path's limit.
				uc.buf = append(uc.buf, make([]byte, len(uc.buf))...)[:2*len(uc.buf)]
			}
			k, err := uc.c.Read(uc.buf[uc.w:])
			uc.w += k
			if err != nil && k == 0 {
				uc.close()
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return cut(err)
			}
		}
		if err := parseResponse(uc.buf[uc.r:uc.r+hn], &fc.rh); err != nil {
			uc.close()
			return err
		}
		if fc.rh.status >= 200 {
			break
		}
		if fc.rh.status == http.StatusSwitchingProtocols {
			uc.close()
			return errBadResponse
		}
		uc.r += hn // 1xx: skipped, like the net/http path
	}
	ex.headers = time.Now()
	ttfb := ex.headers.Sub(ex.wrote)
	ex.ttfb = ttfb
	pe.m.ttfb.Observe(ttfb.Seconds())
	// The try timeout's deadline stays on uc until relay needs another
	// read (most responses arrive with their head), saving a timer update.
	fc.isHead = bstr(fc.buf[fc.r:], h.method) == http.MethodHead
	if !fc.consumeBody() {
		// The request body was streamed from the connection: the buffer
		// holds nothing more of this request.
		fc.r, fc.w = 0, 0
	}
	err := b.relay(fc, ex, pe, uc, hn)
	t.End(pool.Outcome{Status: fc.rh.status, TTFB: ttfb})
	if err != nil {
		ex.err = cut(err)
		return errRelayed
	}
	return nil
}

// copyBody streams n more request body bytes from the client to uc.
func (fc *fastConn) copyBody(uc *upConn, n int64) error {
	fc.c.SetReadDeadline(time.Time{})
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for n > 0 {
		chunk := *bp
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		k, err := fc.c.Read(chunk)
		if k > 0 {
			if _, werr := uc.c.Write(chunk[:k]); werr != nil {
				return werr
			}
			n -= int64(k)
		}
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return clientBodyError{err}
		}
	}
	return nil
}
