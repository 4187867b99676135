package lb

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes one JSON object per line per request:
//
//	{"time":"2026-01-02T15:04:05.000Z","request_id":"...","client":"10.0.0.1",
//	 "method":"GET","host":"app.example.com","path":"/x","route":"web",
//	 "pool":"web","target":"127.0.0.1:3000","status":200,"bytes_out":120,
//	 "duration_ms":1.52,"upstream_ms":1.1,"retries":0,"rtt_ms":0.21,"error":"..."}
//
// rtt_ms is the client connection's round-trip time (the kernel's
// smoothed estimate, TCP_INFO) when the request ended; absent when it is
// not known.
//
// Each line is built in a pooled buffer and written with one Write call
// under a mutex (unbuffered, like nginx's default access_log), so lines
// never interleave and nothing is lost when the process stops.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func newAccessLog(w io.Writer) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (l *accessLog) write(ex *exchange, d time.Duration) {
	bp := lineBufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = ex.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, ex.id)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, remoteAddr(ex.remote).String())
	b = append(b, `,"method":`...)
	b = appendJSONString(b, ex.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, ex.host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, ex.path)
	b = append(b, `,"route":`...)
	pool := ""
	if ex.route != nil {
		b = appendJSONString(b, ex.route.name)
		pool = ex.route.m.pool
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"pool":`...)
	b = appendJSONString(b, pool)
	b = append(b, `,"target":`...)
	b = appendJSONString(b, ex.target)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ex.status), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, ex.bytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"upstream_ms":`...)
	b = strconv.AppendFloat(b, float64(ex.ttfb.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(ex.retries), 10)
	if ex.rtt.Smoothed > 0 {
		b = append(b, `,"rtt_ms":`...)
		b = strconv.AppendFloat(b, float64(ex.rtt.Smoothed.Microseconds())/1000, 'f', 3, 64)
	}
	if ex.websocket {
		b = append(b, `,"websocket":true`...)
	}
	if ex.err != nil {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, ex.err.Error())
	}
	b = append(b, "}\n"...)
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	lineBufs.Put(bp)
}

// appendJSONString appends s as a JSON string, escaping quotes,
// backslashes, control bytes and invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// finish records a finished exchange of the net/http path in metrics,
// the access log and the observer, once.
func (b *Balancer) finish(ex *exchange, r *http.Request) {
	if ex.logged {
		return
	}
	ex.method, ex.host, ex.path, ex.remote = r.Method, r.Host, r.URL.Path, r.RemoteAddr
	ex.rtt = connOf(r.Context()).readRTT()
	b.record(ex)
}

// wantsInfo reports whether record needs the exchange's method, host,
// path and remote fields (the fast path fills them only then).
func (b *Balancer) wantsInfo() bool {
	return b.alog.Load() != nil || b.obs.Load() != nil
}

// record records a finished exchange whose request fields are filled.
func (b *Balancer) record(ex *exchange) {
	ex.logged = true
	end := time.Now()
	d := end.Sub(ex.start)
	b.metrics.observe(ex, d)
	if l := b.alog.Load(); l != nil {
		l.write(ex, d)
	}
	if o := b.observer(); o != nil {
		observe(o, ex, end)
	}
}

var recordPool = sync.Pool{New: func() any { return new(RequestRecord) }}

// observe hands ex to o as a pooled RequestRecord.
func observe(o RequestObserver, ex *exchange, end time.Time) {
	rec := recordPool.Get().(*RequestRecord)
	*rec = RequestRecord{
		Start: ex.start, RequestID: ex.id, Method: ex.method, Host: ex.host, Path: ex.path,
		Target: ex.target, Status: ex.status, BytesOut: ex.bytesOut, Retries: ex.retries,
		Total: end.Sub(ex.start), Held: ex.held, RTT: ex.rtt.Smoothed, RTTMin: ex.rtt.Min, Cache: cacheResults[ex.cached], BodyBytes: ex.bodyIn,
	}
	if ex.route != nil {
		rec.Route, rec.Pool = ex.route.name, ex.route.m.pool
	}
	if !ex.wrote.IsZero() {
		rec.Queue = ex.wrote.Sub(ex.start)
		if !ex.headers.IsZero() {
			rec.TTFB = ex.headers.Sub(ex.wrote)
			rec.Transfer = end.Sub(ex.headers)
		}
	}
	if ex.idBorrowed {
		rec.RequestID = strings.Clone(ex.id)
	}
	if ex.err != nil {
		rec.Err = ex.err.Error()
	}
	o.ObserveRequest(rec)
	*rec = RequestRecord{}
	recordPool.Put(rec)
}
