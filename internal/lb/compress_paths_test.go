package lb

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Compression end to end on both paths (compress.go): the head each rule
// produces, and bodies that decode back to what the target sent.

// textBody is a compressible body of n bytes that differs by seed.
func textBody(n, seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "function f%d_%d(a, b) { return a + b * %d; }\n", seed, i, i%97)
	}
	return b.Bytes()[:n]
}

// decode returns body decoded from coding ("" or "identity": as it is).
func decode(t testing.TB, coding string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "", "identity":
		return body
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unknown coding %q", coding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", coding, err)
	}
	return out
}

// TestCompressionRulesOnBothPaths: every rule of compressFor, end to end,
// on both paths, each case asserting the path that served it.
func TestCompressionRulesOnBothPaths(t *testing.T) {
	big := textBody(20<<10, 1)
	for _, tc := range []struct {
		name    string
		accept  string // Accept-Encoding line(s), "" for none
		method  string
		route   Compression
		status  int
		header  map[string]string // answer fields the target sets
		chunked bool              // the target streams without Content-Length
		body    []byte
		// want: the Content-Encoding the client gets ("" none), and
		// whether Vary names Accept-Encoding.
		want     string
		wantVary bool
		vary     []string // the whole Vary list, when checked
		etag     string   // the ETag the client gets, when checked
		fast     bool     // served by the fast path
	}{
		{name: "gzip", accept: "gzip", want: "gzip", wantVary: true, fast: true},
		{name: "br preferred", accept: "gzip, deflate, br, zstd", want: "br", wantVary: true, fast: true},
		{name: "zstd over gzip", accept: "gzip, zstd", want: "zstd", wantVary: true, fast: true},
		{name: "x-gzip", accept: "x-gzip", want: "gzip", wantVary: true, fast: true},
		{name: "q-values", accept: "br;q=0.5, gzip;q=0.8, zstd;q=0.1", want: "gzip", wantVary: true, fast: true},
		{name: "q=0 refuses", accept: "br;q=0, gzip", want: "gzip", wantVary: true, fast: true},
		{name: "star", accept: "gzip;q=0.5, *", want: "br", wantVary: true, fast: true},
		{name: "star q=0", accept: "*;q=0", want: "", wantVary: true, fast: true},
		{name: "identity only", accept: "identity", want: "", wantVary: true, fast: true},
		{name: "no Accept-Encoding", want: "", wantVary: true, fast: true},
		{name: "bad q skipped", accept: "br;q=2, gzip;q=x, zstd;q=0.3", want: "zstd", wantVary: true, fast: true},
		{name: "two Accept-Encoding fields (handed over)", accept: "identity\r\nAccept-Encoding: gzip", want: "gzip", wantVary: true},
		{name: "chunked target", accept: "gzip", chunked: true, want: "gzip", wantVary: true, fast: true},
		{name: "image not compressed", accept: "gzip", header: map[string]string{"Content-Type": "image/png"}, want: "", fast: true},
		{name: "json with charset", accept: "br", header: map[string]string{"Content-Type": "application/json; charset=utf-8"}, want: "br", wantVary: true, fast: true},
		{name: "small body", accept: "gzip", body: []byte("tiny body"), want: "", wantVary: true, fast: true},
		{name: "small chunked body compressed", accept: "gzip", chunked: true, body: []byte("tiny body"), want: "gzip", wantVary: true, fast: true},
		{name: "HEAD", accept: "gzip", method: "HEAD", want: "", wantVary: true, fast: true},
		{name: "206 range", accept: "gzip", status: 206, header: map[string]string{"Content-Range": fmt.Sprintf("bytes 0-%d/99999", len(big)-1)}, want: "", wantVary: true, fast: true},
		// net/http (the test's target) drops a 304's Content-Type: no type, no Vary.
		{name: "304", accept: "gzip", status: 304, want: "", fast: true},
		{name: "204", accept: "gzip", status: 204, want: "", wantVary: true, fast: true},
		{name: "404 page compressed", accept: "gzip", status: 404, want: "gzip", wantVary: true, fast: true},
		{name: "already encoded", accept: "gzip", header: map[string]string{"Content-Encoding": "deflate"}, want: "deflate", wantVary: true, fast: true},
		{name: "no-transform", accept: "gzip", header: map[string]string{"Cache-Control": "public, no-transform"}, want: "", wantVary: true, fast: true},
		{name: "Vary extended", accept: "gzip", header: map[string]string{"Vary": "Origin"}, want: "gzip", vary: []string{"Origin", "Accept-Encoding"}, wantVary: true, fast: true},
		{name: "Vary kept", accept: "gzip", header: map[string]string{"Vary": "Origin, accept-encoding"}, want: "gzip", vary: []string{"Origin, accept-encoding"}, wantVary: true, fast: true},
		{name: "Vary star kept", accept: "gzip", header: map[string]string{"Vary": "*"}, want: "gzip", vary: []string{"*"}, fast: true},
		{name: "strong ETag made weak", accept: "gzip", header: map[string]string{"ETag": `"abc"`}, want: "gzip", wantVary: true, etag: `W/"abc"`, fast: true},
		{name: "weak ETag kept", accept: "gzip", header: map[string]string{"ETag": `W/"abc"`}, want: "gzip", wantVary: true, etag: `W/"abc"`, fast: true},
		{name: "malformed ETag dropped", accept: "gzip", header: map[string]string{"ETag": `abc`}, want: "gzip", wantVary: true, etag: "", fast: true},
		{name: "ETag kept uncompressed", accept: "identity", header: map[string]string{"ETag": `"abc"`}, want: "", wantVary: true, etag: `"abc"`, fast: true},
		{name: "trailers announced", accept: "gzip", chunked: true, header: map[string]string{"Trailer": "X-Sum"}, want: "", wantVary: true, fast: true},
		{name: "route off", accept: "gzip", route: Compression{Off: true}, want: "", fast: true},
		{name: "route types", accept: "gzip", route: Compression{Types: []string{"application/*"}}, want: "", fast: true},
		{name: "route types match", accept: "gzip", route: Compression{Types: []string{"TEXT/*"}}, want: "gzip", wantVary: true, fast: true},
		{name: "route min size", accept: "gzip", route: Compression{MinSize: 1 << 20}, want: "", wantVary: true, fast: true},
		{name: "route level 9", accept: "gzip, br, zstd", route: Compression{Level: 9}, want: "br", wantVary: true, fast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				body := tc.body
				if body == nil {
					body = big
				}
				status := tc.status
				if status == 0 {
					status = 200
				}
				be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					h := w.Header()
					h.Set("Content-Type", "text/javascript")
					for k, v := range tc.header {
						h.Set(k, v)
					}
					if !tc.chunked {
						h.Set("Content-Length", strconv.Itoa(len(body)))
					}
					w.WriteHeader(status)
					if r.Method == "HEAD" || status == 204 || status == 304 {
						return
					}
					if tc.chunked {
						half := len(body) / 2
						w.Write(body[:half])
						w.(http.Flusher).Flush()
						w.Write(body[half:])
						return
					}
					w.Write(body)
				})
				c := baseConfig(be.addr)
				c.Routes[0].Compression = tc.route
				lb := start(t, cfg(c))
				method := tc.method
				if method == "" {
					method = "GET"
				}
				req := method + " /app.js HTTP/1.1\r\nHost: a\r\n"
				if tc.accept != "" {
					req += "Accept-Encoding: " + tc.accept + "\r\n"
				}
				out := raw(t, lb.addr, req+"Connection: close\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), &http.Request{Method: method})
				if err != nil {
					t.Fatalf("read response: %v in %q", err, out)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				if resp.StatusCode != status {
					t.Fatalf("status %d, want %d", resp.StatusCode, status)
				}
				ce := resp.Header.Get("Content-Encoding")
				if ce != tc.want {
					t.Errorf("Content-Encoding %q, want %q", ce, tc.want)
				}
				vary := resp.Header.Values("Vary")
				hasVary := false
				for _, v := range vary {
					hasVary = hasVary || hasToken(v, "accept-encoding")
				}
				if hasVary != tc.wantVary {
					t.Errorf("Vary %q: names Accept-Encoding %v, want %v", vary, hasVary, tc.wantVary)
				}
				if tc.vary != nil && strings.Join(vary, "|") != strings.Join(tc.vary, "|") {
					t.Errorf("Vary %q, want %q", vary, tc.vary)
				}
				if _, ok := tc.header["ETag"]; ok && resp.Header.Get("Etag") != tc.etag {
					t.Errorf("ETag %q, want %q", resp.Header.Get("Etag"), tc.etag)
				}
				compressed := tc.want != "" && tc.want != "deflate"
				if compressed {
					// Streamed chunked; net/http sends a body that ended
					// within its first 2 KiB with its own length instead.
					cl := resp.Header.Get("Content-Length")
					chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
					switch {
					case cl != "" && (path == fastPath && tc.fast || cl != strconv.Itoa(len(got))):
						t.Errorf("compressed answer has Content-Length %s (%d bytes sent)", cl, len(got))
					case cl == "" && !chunked:
						t.Errorf("compressed answer framed %q, want chunked", resp.TransferEncoding)
					}
					if len(got) >= len(body) && len(body) > 1000 {
						t.Errorf("compressed %d bytes to %d", len(body), len(got))
					}
				} else if !tc.chunked && method == "GET" && status != 204 && status != 304 {
					if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
						t.Errorf("Content-Length %q, want %d", cl, len(body))
					}
				}
				want := body
				if method == "HEAD" || status == 204 || status == 304 {
					want = nil
				}
				if tc.want == "deflate" {
					// Passed as the target sent it.
					if !bytes.Equal(got, want) {
						t.Errorf("an encoded answer's body changed")
					}
				} else if dec := decode(t, tc.want, got); !bytes.Equal(dec, want) {
					t.Errorf("body decodes to %d bytes, want the %d sent", len(dec), len(want))
				}
				fast := int64(0)
				if tc.fast {
					fast = 1
				}
				assertServedBy(t, lb, path, fast)
			})
		})
	}
}

// TestCompressionStreamsInPieces: a server-sent event stream through
// compression reaches the client event by event: the target sends the
// next event only after the client decoded the previous one, so an
// answer held back to compress would deadlock (and time out).
func TestCompressionStreamsInPieces(t *testing.T) {
	for _, coding := range []string{"gzip", "br", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				next := make(chan struct{})
				const events = 4
				be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(200)
					for i := range events {
						fmt.Fprintf(w, "data: event %d %s\n\n", i, strings.Repeat("x", 200))
						w.(http.Flusher).Flush()
						if i < events-1 {
							select {
							case <-next:
							case <-r.Context().Done():
								return
							case <-time.After(10 * time.Second):
								return
							}
						}
					}
				})
				lb := start(t, cfg(baseConfig(be.addr)))
				tr := &http.Transport{DisableCompression: true}
				defer tr.CloseIdleConnections()
				req, _ := http.NewRequest("GET", lb.url+"/events", nil)
				req.Header.Set("Accept-Encoding", coding)
				resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if ce := resp.Header.Get("Content-Encoding"); ce != coding {
					t.Fatalf("Content-Encoding %q, want %q", ce, coding)
				}
				var dr io.Reader
				switch coding {
				case "gzip":
					zr, err := gzip.NewReader(resp.Body)
					if err != nil {
						t.Fatal(err)
					}
					dr = zr
				case "br":
					dr = brotli.NewReader(resp.Body)
				case "zstd":
					zr, err := zstd.NewReader(resp.Body, zstd.WithDecoderConcurrency(1))
					if err != nil {
						t.Fatal(err)
					}
					defer zr.Close()
					dr = zr
				}
				br := bufio.NewReader(dr)
				for i := range events {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("event %d: %v", i, err)
					}
					if want := fmt.Sprintf("data: event %d ", i); !strings.HasPrefix(line, want) {
						t.Fatalf("event %d: got %q", i, line)
					}
					if _, err := br.ReadString('\n'); err != nil {
						t.Fatalf("event %d end: %v", i, err)
					}
					if i < events-1 {
						next <- struct{}{}
					}
				}
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Errorf("after the events: %q, %v", rest, err)
				}
				assertServedBy(t, lb, path, 1)
			})
		})
	}
}

// TestCompressionPipelined: pipelined requests on one connection each get
// their own compressed answer, in order, on the fast path.
func TestCompressionPipelined(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(textBody(5000+n*1000, n))))
		}
		w.Write(textBody(5000+n*1000, n))
	})
	lb := start(t, baseConfig(be.addr))
	codings := []string{"gzip", "br", "zstd", "identity", "gzip"}
	var req strings.Builder
	for i, c := range codings {
		q := ""
		if i%2 == 1 {
			q = "&chunked=1"
		}
		fmt.Fprintf(&req, "GET /p?n=%d%s HTTP/1.1\r\nHost: a\r\nAccept-Encoding: %s\r\n", i, q, c)
		if i == len(codings)-1 {
			req.WriteString("Connection: close\r\n")
		}
		req.WriteString("\r\n")
	}
	out := raw(t, lb.addr, req.String())
	br := bufio.NewReader(strings.NewReader(out))
	for i, c := range codings {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		want := c
		if c == "identity" {
			want = ""
		}
		if ce := resp.Header.Get("Content-Encoding"); ce != want {
			t.Errorf("answer %d: Content-Encoding %q, want %q", i, ce, want)
		}
		if dec := decode(t, want, got); !bytes.Equal(dec, textBody(5000+i*1000, i)) {
			t.Errorf("answer %d: body differs after decoding", i)
		}
	}
	if n := fastCount(lb); n != int64(len(codings)) {
		t.Errorf("fast path served %d, want %d", n, len(codings))
	}
}

// TestCompressionCloseDelimited: a target that ends its body by closing
// (no Content-Length, no chunked) is compressed and re-framed as chunked.
func TestCompressionCloseDelimited(t *testing.T) {
	body := textBody(30<<10, 7)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nConnection: close\r\n\r\n")
				c.Write(body[:1000])
				c.Write(body[1000:])
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		lb := start(t, cfg(baseConfig(ln.Addr().String())))
		resp, got := rawResponse(t, lb.addr, "GET /s.css HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n")
		if ce := resp.Header.Get("Content-Encoding"); ce != "br" {
			t.Fatalf("Content-Encoding %q", ce)
		}
		if dec := decode(t, "br", []byte(got)); !bytes.Equal(dec, body) {
			t.Errorf("decoded %d bytes, want %d", len(dec), len(body))
		}
		assertServedBy(t, lb, path, 1)
	})
}

// TestCompressionClientHangsUp: a client that hangs up in the middle of a
// compressed body ends the exchange on both paths: the target's request
// is canceled, the exchange recorded, no descriptor or goroutine left
// (goleak in TestMain), and the next compressed answer is whole.
func TestCompressionClientHangsUp(t *testing.T) {
	for _, coding := range []string{"gzip", "br", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				base := fdBaseline(t)
				canceled := make(chan struct{}, 1)
				be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					if r.URL.Path == "/whole" {
						w.Write(textBody(40<<10, 2))
						return
					}
					for i := 0; ; i++ {
						if _, err := w.Write(textBody(8<<10, i)); err != nil {
							break
						}
						w.(http.Flusher).Flush()
						select {
						case <-r.Context().Done():
						case <-time.After(time.Millisecond):
							if i < 10000 {
								continue
							}
						}
						break
					}
					<-r.Context().Done()
					canceled <- struct{}{}
				})
				var records countObserver
				c := cfg(baseConfig(be.addr))
				c.Observer = &records
				lb := start(t, c)
				conn, err := net.Dial("tcp", lb.addr)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: a\r\nAccept-Encoding: "+coding+"\r\n\r\n")
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if ce := resp.Header.Get("Content-Encoding"); ce != coding {
					t.Fatalf("Content-Encoding %q", ce)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 2000)); err != nil {
					t.Fatalf("first compressed bytes: %v", err)
				}
				conn.Close()
				select {
				case <-canceled:
				case <-time.After(10 * time.Second):
					t.Fatal("the target's request was not canceled after the client hung up")
				}
				waitFor(t, 5*time.Second, "the exchange recorded", func() bool { return records.n.Load() == 1 })
				r2, body := get(t, client(t), lb.url+"/whole", "Accept-Encoding", coding)
				if dec := decode(t, r2.Header.Get("Content-Encoding"), []byte(body)); r2.StatusCode != 200 || !bytes.Equal(dec, textBody(40<<10, 2)) {
					t.Errorf("next answer: %d, %d bytes", r2.StatusCode, len(dec))
				}
				assertServedBy(t, lb, path, 2)
				lb.stop(t)
				be.Close()
				checkFDs(t, base)
			})
		})
	}
}

// countObserver counts finished exchanges.
type countObserver struct{ n atomic.Int64 }

func (o *countObserver) ObserveRequest(*RequestRecord) { o.n.Add(1) }
