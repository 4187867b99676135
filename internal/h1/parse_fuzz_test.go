package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// Fuzz targets for the fast path's head parsers (parse.go). The fast
// path must only accept heads that are unambiguous: every framing decision
// it takes must agree with the smuggling guard's inspector and with
// net/http, and anything shaped like a smuggling attempt must be rejected
// (handed over to the guarded net/http path), never served.

var fastRequestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /p/q?x=1&y=%41 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
	"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Request-Id: abc\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
	// Smuggling-shaped.
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\rX: y\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \x005\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\n\r\n",
	// Truncated.
	"GET / HTTP/1.1\r\nHost: a\r\n\r",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Le",
	"GET / HT",
}

// lineRisks reports the hazards of a head that the fast path must never
// accept: bare CR or LF, NUL, obs-fold, and (by field name)
// Transfer-Encoding or more than one Content-Length.
func lineRisks(head []byte) []string {
	var out []string
	if bytes.IndexByte(head, 0) >= 0 {
		out = append(out, "NUL")
	}
	for i, c := range head {
		if c == '\r' && (i+1 >= len(head) || head[i+1] != '\n') {
			out = append(out, "bare CR")
			break
		}
		if c == '\n' && (i == 0 || head[i-1] != '\r') {
			out = append(out, "bare LF")
			break
		}
	}
	lines := strings.Split(string(head), "\r\n")
	nCL := 0
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			out = append(out, "obs-fold")
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "transfer-encoding":
			out = append(out, "Transfer-Encoding")
		case "content-length":
			nCL++
		}
	}
	if nCL > 1 {
		out = append(out, "duplicate Content-Length")
	}
	return out
}

// FuzzFastParseRequest: the fast request parser never panics, accepts no
// smuggling-shaped head, agrees with the guard's inspector on framing,
// and agrees with http.ReadRequest on what it accepts.
func FuzzFastParseRequest(f *testing.F) {
	for _, s := range fastRequestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := HeadEnd(data, 0)
		var h Request
		if n < 0 {
			// Truncated heads are never parsed; the parser must still
			// survive them.
			ParseRequest(data, &h, testKinds)
			return
		}
		head := data[:n]
		if !ParseRequest(head, &h, testKinds) {
			return
		}
		if r := lineRisks(head); len(r) > 0 {
			t.Fatalf("fast path accepted a head with %v: %q", r, head)
		}
		if h.Size != n || h.ContentLength < 0 {
			t.Fatalf("size %d clen %d for %d-byte head", h.Size, h.ContentLength, n)
		}
		for _, sp := range []Span{h.Method, h.Target, h.Path, h.Host} {
			if sp.Start < 0 || sp.End < sp.Start || int(sp.End) > n {
				t.Fatalf("span %v out of head of %d bytes", sp, n)
			}
		}
		for _, f := range h.Fields[:h.NFields] {
			if !bytes.HasSuffix(head[f.Start:f.End], []byte("\r\n")) {
				t.Fatalf("kept field %q lacks CRLF", head[f.Start:f.End])
			}
		}

		// The guard's inspector sees one clean header block with the same
		// framing, and stops inspecting exactly for a WebSocket handshake
		// (the bytes after it are the tunnel's).
		var ins Inspector
		k, err := ins.Feed(head)
		if err != nil || k != n {
			t.Fatalf("guard rejects a head the fast path accepts (%d/%d, %v): %q", k, n, err, head)
		}
		if ins.blocks != 1 || ins.passthrough != h.Upgrade || ins.nTE != 0 || ins.nCL > 1 || int64(ins.clen) != h.ContentLength {
			t.Fatalf("guard framing differs: blocks %d passthrough %v TE %d CL %d/%d vs fast %d: %q",
				ins.blocks, ins.passthrough, ins.nTE, ins.nCL, ins.clen, h.ContentLength, head)
		}
		wantState := sMsgStart
		if h.ContentLength > 0 {
			wantState = sBody
		}
		if ins.st != wantState && !h.Upgrade {
			t.Fatalf("guard state %d after head, want %d: %q", ins.st, wantState, head)
		}

		// net/http agrees on method, target, path, host, length and fields.
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("net/http rejects a head the fast path accepts (%v): %q", err, head)
		}
		if req.Method != string(head[h.Method.Start:h.Method.End]) || req.RequestURI != string(head[h.Target.Start:h.Target.End]) ||
			req.URL.Path != string(head[h.Path.Start:h.Path.End]) || req.Host != string(head[h.Host.Start:h.Host.End]) {
			t.Fatalf("net/http reads %s %q path %q host %q; fast path %q %q %q %q",
				req.Method, req.RequestURI, req.URL.Path, req.Host,
				head[h.Method.Start:h.Method.End], head[h.Target.Start:h.Target.End], head[h.Path.Start:h.Path.End], head[h.Host.Start:h.Host.End])
		}
		if req.ContentLength != h.ContentLength {
			t.Fatalf("net/http length %d, fast path %d: %q", req.ContentLength, h.ContentLength, head)
		}
		if req.Close != h.Close {
			t.Fatalf("net/http close %v, fast path %v: %q", req.Close, h.Close, head)
		}
		for _, f := range h.Fields[:h.NFields] {
			name, val, _ := strings.Cut(strings.TrimSuffix(string(head[f.Start:f.End]), "\r\n"), ":")
			val = strings.Trim(val, " \t")
			found := false
			for _, v := range req.Header.Values(name) {
				found = found || v == val
			}
			if !found && !strings.EqualFold(name, "host") {
				t.Fatalf("field %q: %q not among net/http's %q", name, val, req.Header.Values(name))
			}
		}
	})
}

var fastResponseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\n",
	"HTTP/1.1 200\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n",
	// Smuggling-shaped.
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
	"HTTP/1.1 200 O\rK\r\nContent-Length: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
	// Truncated.
	"HTTP/1.1 200 OK\r\nContent-Len",
	"HTTP/1.1 2",
}

// FuzzFastParseResponse: the fast response parser never panics, accepts
// no ambiguous head, and what it accepts (and the head it relays) reads
// the same in net/http.
func FuzzFastParseResponse(f *testing.F) {
	for _, s := range fastResponseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := HeadEnd(data, 0)
		var h Response
		if n < 0 {
			ParseResponse(data, &h, testKinds)
			return
		}
		head := data[:n]
		if ParseResponse(head, &h, testKinds) != nil {
			return
		}
		for _, r := range lineRisks(head) {
			if r != "Transfer-Encoding" && r != "duplicate Content-Length" {
				t.Fatalf("fast path accepted a response head with %s: %q", r, head)
			}
		}
		if h.Status < 100 || h.Status > 999 || h.Size != n {
			t.Fatalf("status %d size %d: %q", h.Status, h.Size, head)
		}
		// The head the fast path relays (as relay builds it, minus the
		// request id) is read by net/http with the same framing.
		eol := bytes.IndexByte(head, '\n') + 1
		out := append([]byte("HTTP/1.1 "), head[9:eol]...)
		for _, f := range h.Fields[:h.NFields] {
			line := head[f.Start:f.End]
			name, _, _ := bytes.Cut(line, []byte(":"))
			switch strings.ToLower(string(name)) {
			case "connection", "transfer-encoding", "keep-alive", "te", "upgrade", "proxy-connection":
				t.Fatalf("hop-by-hop field %q kept: %q", line, head)
			case "content-length":
				if h.Chunked {
					t.Fatalf("Content-Length kept with chunked: %q", head)
				}
			}
			for k := 0; k < h.ndrop; k++ {
				if equalFoldBoth(name, string(head[h.drop[k].Start:h.drop[k].End])) {
					t.Fatalf("field %q listed in Connection kept: %q", name, head)
				}
			}
			out = append(out, line...)
		}
		if h.Chunked {
			out = append(out, "Transfer-Encoding: chunked\r\n"...)
		}
		out = append(out, "\r\n"...)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("net/http rejects the relayed head (%v): %q from %q", err, out, head)
		}
		if resp.StatusCode != h.Status {
			t.Fatalf("net/http status %d, fast path %d: %q", resp.StatusCode, h.Status, head)
		}
		bodyAllowed := h.Status >= 200 && h.Status != 204 && h.Status != 304
		switch {
		case !bodyAllowed:
		case h.Chunked:
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("net/http coding %q, fast path chunked: %q", resp.TransferEncoding, out)
			}
		case h.ContentLength >= 0:
			if resp.ContentLength != h.ContentLength {
				t.Fatalf("net/http length %d, fast path %d: %q", resp.ContentLength, h.ContentLength, out)
			}
		}
		// A chunked response with a Content-Length from the target is not
		// trusted for reuse.
		if h.Chunked && bytes.Contains(bytes.ToLower(head), []byte("\ncontent-length:")) && !h.Close {
			t.Fatalf("TE+CL response keeps the target connection: %q", head)
		}
	})
}
