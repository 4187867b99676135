package lb

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// block encodes the pseudo-fields of a request for path and the given
// fields as one header block.
func (c *h2Raw) block(method, path string, fields ...string) []byte {
	c.hbuf.Reset()
	for _, kv := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "a.test"}, {":path", path}} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

// TestH2FastPathHeaderBlocks: the loops' own decoding of request header
// blocks (evh2hdec.go). A block split over HEADERS and CONTINUATION
// frames arrives whole; a stream whose body comes later keeps its own
// fields while other streams' blocks are decoded meanwhile; a field list
// over the limit is answered 431 and the connection goes on.
func TestH2FastPathHeaderBlocks(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s a=%s b=%s body=%s", r.Method, r.URL.Path, r.Header.Get("X-A"), r.Header.Get("X-B"), b)
	})
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxHeaderBytes = 8 << 10
	lb, _ := h2FastLB(t, cfg)
	fast := lb.listeners["web"].fast
	c := dialRawH2(t, lb)

	// One block in three frames.
	blk := c.block("GET", "/split", "x-a", strings.Repeat("a", 300), "x-b", "two")
	id := c.next
	c.next += 2
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk[:100], EndStream: true})
	c.fr.WriteContinuation(id, false, blk[100:200])
	c.fr.WriteContinuation(id, true, blk[200:])
	want := "GET /split a=" + strings.Repeat("a", 300) + " b=two body="
	if st, body, code := c.answer(id); st != 200 || string(body) != want || code != 0 {
		t.Fatalf("split block: %d %q %v", st, body, code)
	}

	// A POST whose body comes after another stream was served.
	post := c.next
	c.next += 2
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: post, BlockFragment: c.block("POST", "/post", "x-a", "first", "content-length", "4"), EndHeaders: true})
	get := c.request("/get", true, "x-a", "second", "x-b", "other")
	if st, body, code := c.answer(get); st != 200 || string(body) != "GET /get a=second b=other body=" || code != 0 {
		t.Fatalf("stream in between: %d %q %v", st, body, code)
	}
	c.fr.WriteData(post, true, []byte("data"))
	if st, body, code := c.answer(post); st != 200 || string(body) != "POST /post a=first b= body=data" || code != 0 {
		t.Fatalf("stream whose body came later: %d %q %v", st, body, code)
	}

	// Over MaxHeaderBytes: 431, and the connection serves on.
	// (Fields each within it: a single string over it is a compression
	// error, as with x/net's framer.)
	x := strings.Repeat("x", 3<<10)
	big := c.request("/big", true, "x-a", x, "x-b", x, "x-c", x)
	if st, _, code := c.answer(big); st != 431 || code != 0 {
		t.Fatalf("header list over the limit: %d %v, want 431", st, code)
	}
	if st, body, code := c.answer(c.request("/after", true)); st != 200 || string(body) != "GET /after a= b= body=" || code != 0 {
		t.Fatalf("after the 431: %d %q %v", st, body, code)
	}
	if n := fast.requests.Load(); n != 4 {
		t.Fatalf("fast path served %d of 4", n)
	}
}
