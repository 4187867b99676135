package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzInspector: the guard's verdict does not depend on how the bytes
// are split into reads, and whatever it lets through as complete
// requests net/http parses as the same number of requests.
func FuzzInspector(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		var whole Inspector
		nWhole, errWhole := whole.Feed(data)

		var parts Inspector
		step := int(split%16) + 1
		nParts, off := 0, 0
		var errParts error
		for off < len(data) && errParts == nil {
			end := min(off+step, len(data))
			var n int
			n, errParts = parts.Feed(data[off:end])
			nParts += n
			off = end
		}
		if (errWhole == nil) != (errParts == nil) || nWhole != nParts || whole.blocks != parts.blocks {
			t.Fatalf("split %d: whole (%d, %v, %d blocks) vs parts (%d, %v, %d blocks)", step, nWhole, errWhole, whole.blocks, nParts, errParts, parts.blocks)
		}
		// Complete, clean, non-upgrade streams: net/http agrees on the count.
		if errWhole != nil || whole.passthrough || whole.st != sMsgStart {
			return
		}
		br := bufio.NewReader(bytes.NewReader(data[:nWhole]))
		var got int64
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				break
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				break
			}
			got++
		}
		if got > whole.blocks {
			t.Fatalf("net/http read %d requests where the guard saw %d blocks in %q", got, whole.blocks, data)
		}
	})
}

// BenchmarkInspector measures the smuggling guard on a typical request.
func BenchmarkInspector(b *testing.B) {
	req := []byte("GET /api/v1/users/42?x=1 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789\r\n\r\n")
	var s Inspector
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := s.Feed(req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestValidMethod(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "M-SEARCH": true, "X!#$%&'*+.^_`|~": true,
		"": false, "GE T": false, "GET\t": false, "G\x00T": false, "GÉT": false, "(GET)": false} {
		if ValidMethod(m) != want || ValidMethod([]byte(m)) != want {
			t.Errorf("ValidMethod(%q) = %v, want %v", m, !want, want)
		}
	}
}

// TestParsersAllocateNothing holds the package to its contract: parsing a
// request head, a response head and inspecting a request allocates
// nothing (the fast path serves a request with no allocation).
func TestParsersAllocateNothing(t *testing.T) {
	req := []byte("POST /api/v1/users/42?x=1 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: t\r\nConnection: keep-alive, close\r\nCookie: s=1\r\nX-Request-Id: abc\r\nContent-Length: 5\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n")
	var (
		h   Request
		rh  Response
		ins Inspector
	)
	for _, tc := range []struct {
		name string
		run  func() bool
	}{
		{"ParseRequest", func() bool { return ParseRequest(req, &h, testKinds) }},
		{"ParseResponse", func() bool { return ParseResponse(resp, &rh, testKinds) == nil }},
		{"Inspector.Feed", func() bool { n, err := ins.Feed(req); return n == len(req) && err == nil }},
	} {
		if !tc.run() {
			t.Fatalf("%s rejects its input", tc.name)
		}
		if n := testing.AllocsPerRun(100, func() { tc.run() }); n != 0 {
			t.Errorf("%s: %.1f allocations, want 0", tc.name, n)
		}
	}
}

// BenchmarkParseRequest measures the fast path's request parser on a
// typical browser request.
func BenchmarkParseRequest(b *testing.B) {
	req := []byte("GET /api/v1/users/42?x=1 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789\r\n\r\n")
	var h Request
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !ParseRequest(req, &h, testKinds) {
			b.Fatal("rejected")
		}
	}
}

// BenchmarkParseResponse measures the fast path's response parser.
func BenchmarkParseResponse(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\nDate: Wed, 02 Dec 2026 07:00:00 GMT\r\nCache-Control: no-store\r\n\r\n")
	var h Response
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ParseResponse(resp, &h, testKinds) != nil {
			b.Fatal("rejected")
		}
	}
}
