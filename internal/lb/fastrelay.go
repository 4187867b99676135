package lb

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// relay writes the response head parsed in fc.rh (hn bytes at uc.buf[uc.r:])
// to the client and streams the body with the target's framing: fixed
// length, chunked passed through as it is (followed by the guard's
// inspector to find its end), or, for a body delimited by the target
// closing, re-framed as chunked so the client connection survives. The
// target connection goes back to the pool only when the response ended
// exactly where its framing said.
func (b *Balancer) relay(fc *fastConn, ex *exchange, pe *poolEntry, uc *upConn, hn int) (err error) {
	rh := &fc.rh
	up := uc.buf[uc.r:]
	reuse := !rh.close
	defer func() {
		if err == nil && reuse {
			pe.up.put(ex.target, uc)
		} else {
			uc.close()
		}
	}()
	o := fc.out[:0]
	o = append(o, "HTTP/1.1 "...)
	o = append(o, up[9:bytes.IndexByte(up, '\n')+1]...)
	for _, f := range rh.fields[:rh.nfields] {
		o = append(o, up[f.s:f.e]...)
	}
	o = append(o, "X-Request-Id: "...)
	o = append(o, ex.id...)
	o = append(o, "\r\n"...)
	const (
		none = iota
		fixed
		chunked
		untilClose
	)
	mode := untilClose
	switch {
	case fc.isHead || rh.status == 204 || rh.status == 304 || rh.status < 200:
		mode = none
	case rh.chunked:
		mode = chunked
	case rh.clen >= 0:
		mode = fixed
	}
	if mode == chunked || mode == untilClose {
		o = append(o, "Transfer-Encoding: chunked\r\n"...)
	}
	if mode == untilClose {
		reuse = false
	}
	if ex.closeAfter {
		o = append(o, "Connection: close\r\n"...)
	}
	o = append(o, "\r\n"...)
	ex.status = rh.status
	uc.r += hn
	avail := uc.buf[uc.r:uc.w]
	uc.r = uc.w

	var ins inspector
	remain := rh.clen
	if mode == chunked {
		ins.startChunked()
	}
	first, cleared := true, false
	for {
		// Take what the framing allows from avail.
		var body []byte
		done := false
		switch mode {
		case none:
			done = true
			if len(avail) > 0 {
				reuse = false
			}
		case fixed:
			n := min(int64(len(avail)), remain)
			body, remain = avail[:n], remain-n
			if int64(len(avail)) > n {
				reuse = false
			}
			done = remain == 0
		case chunked:
			k, ferr := ins.feed(avail)
			switch {
			case errors.Is(ferr, errMsgEnd):
				k++
				done = true
				if k < len(avail) {
					reuse = false
				}
			case ferr != nil:
				return errBadResponse
			}
			body = avail[:k]
		case untilClose:
			if len(avail) > 0 {
				o = strconv.AppendInt(o, int64(len(avail)), 16)
				o = append(o, "\r\n"...)
			}
			body = avail
		}
		ex.bytesOut += int64(len(body))
		if first || len(body) > 0 {
			if len(o)+len(body) <= cap(o) {
				o = append(o, body...)
				body = nil
			}
			if mode == untilClose && len(avail) > 0 {
				if body == nil {
					o = append(o, "\r\n"...)
				}
			}
			if len(o) > 0 {
				if _, werr := fc.c.Write(o); werr != nil {
					return errClientWrite
				}
			}
			if len(body) > 0 {
				if _, werr := fc.c.Write(body); werr != nil {
					return errClientWrite
				}
				if mode == untilClose {
					if _, werr := io.WriteString(fc.c, "\r\n"); werr != nil {
						return errClientWrite
					}
				}
			}
			o = fc.out[:0]
			first = false
		}
		if done {
			return nil
		}
		if !cleared {
			// The body streams on past the try timeout.
			cleared = true
			uc.c.SetDeadline(time.Time{})
			if uc.drainCtx != nil && uc.drainCtx.Err() != nil {
				uc.c.SetDeadline(time.Unix(1, 0)) // the drain hook ran before the line above
			}
		}
		k, rerr := uc.c.Read(uc.buf)
		avail = uc.buf[:k]
		if rerr != nil && k == 0 {
			if mode == untilClose && rerr == io.EOF {
				if _, werr := io.WriteString(fc.c, "0\r\n\r\n"); werr != nil {
					return errClientWrite
				}
				return nil
			}
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return rerr
		}
	}
}
