package lb

import (
	"io"
	"net/http"
	"sync"
	"testing"
)

// recorded is what a target saw of one request.
type recorded struct {
	method, path string
	header       http.Header
	te           []string
	cl           int64
	body         string
	bodyErr      error
}

type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rc *recorder) handler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), r.TransferEncoding, r.ContentLength, string(b), err})
	rc.mu.Unlock()
	io.WriteString(w, "ok:"+r.URL.Path)
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

func smuggleSetup(t *testing.T) (*running, *recorder) {
	rc := &recorder{}
	be := newBackend(t, rc.handler)
	return start(t, baseConfig(be.addr)), rc
}

// TestSmugglingRejected sends each ambiguous request over raw TCP and
// checks the client gets 400 and the target sees nothing.
func TestSmugglingRejected(t *testing.T) {
	lb, rc := smuggleSetup(t)
	const pre = "POST /p HTTP/1.1\r\nHost: a\r\n"
	cases := map[string]string{
		"conflicting content-length": pre + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"duplicate content-length":   pre + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"content-length list":        pre + "Content-Length: 5, 5\r\n\r\nhello",
		"content-length sign":        pre + "Content-Length: +5\r\n\r\nhello",
		"te chunked chunked":         pre + "Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"te gzip chunked":            pre + "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"te xchunked":                pre + "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"te twice":                   pre + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"te identity":                pre + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
		"te in http/1.0":             "POST /p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"obs-fold":                   pre + "X-Foo: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"obs-fold tab":               pre + "X-Foo: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
		"bare cr in value":           pre + "X-Foo: a\rb\r\nContent-Length: 0\r\n\r\n",
		"bare cr line end":           pre + "X-Foo: a\rContent-Length: 0\r\n\r\n",
		"nul in value":               pre + "X-Foo: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"nul in name":                pre + "X-F\x00oo: a\r\nContent-Length: 0\r\n\r\n",
		"space before colon cl":      pre + "Content-Length : 5\r\n\r\nhello",
		"space before colon te":      pre + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
		"space in name":              pre + "X Foo: a\r\nContent-Length: 0\r\n\r\n",
		"bad chunk size":             pre + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"chunk data too long":        pre + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
		"chunk bare lf":              pre + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		"te in trailer":              pre + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			before := len(rc.all())
			out := raw(t, lb.addr, payload)
			resps := readResponses(t, out)
			if len(resps) != 1 || resps[0].StatusCode != 400 {
				t.Fatalf("answer %q, want one 400", out)
			}
			for _, r := range rc.all()[before:] {
				if r.bodyErr == nil {
					t.Fatalf("target received a complete request: %+v", r)
				}
			}
		})
	}
}

// TestCLWithTEClosesConnection: Content-Length with Transfer-Encoding is
// read by Transfer-Encoding alone, Content-Length is not forwarded, and
// the connection is closed after the response so that a pipelined second
// request is never processed.
func TestCLWithTEClosesConnection(t *testing.T) {
	lb, rc := smuggleSetup(t)
	payload := "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n0\r\n\r\n" +
		"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
	out := raw(t, lb.addr, payload)
	resps := readResponses(t, out)
	if len(resps) != 1 || resps[0].StatusCode != 200 || !resps[0].Close {
		t.Fatalf("answer %q: want exactly one 200 with Connection: close", out)
	}
	reqs := rc.all()
	if len(reqs) != 1 || reqs[0].path != "/first" || reqs[0].body != "hello" {
		t.Fatalf("target saw %+v", reqs)
	}
	if cl := reqs[0].header.Get("Content-Length"); cl != "" && cl != "5" {
		t.Fatalf("target got Content-Length %q", cl)
	}
}

// TestPipelinedRequestsStillWork: the guard follows framing across
// keep-alive requests with bodies.
func TestPipelinedRequestsStillWork(t *testing.T) {
	lb, rc := smuggleSetup(t)
	payload := "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	out := raw(t, lb.addr, payload)
	resps := readResponses(t, out)
	if len(resps) != 3 {
		t.Fatalf("got %d responses: %q", len(resps), out)
	}
	reqs := rc.all()
	if len(reqs) != 3 || reqs[0].body != "hello" || reqs[1].body != "abcde" || reqs[2].path != "/c" {
		t.Fatalf("target saw %+v", reqs)
	}
}

func TestH2CUpgradeNotForwarded(t *testing.T) {
	lb, rc := smuggleSetup(t)
	out := raw(t, lb.addr, "GET /h HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	resps := readResponses(t, out)
	if len(resps) != 1 || resps[0].StatusCode != 200 || !resps[0].Close {
		t.Fatalf("answer %q", out)
	}
	reqs := rc.all()
	if len(reqs) != 1 {
		t.Fatalf("target saw %d requests", len(reqs))
	}
	for _, k := range []string{"Upgrade", "Http2-Settings", "Connection"} {
		if v := reqs[0].header.Get(k); v != "" {
			t.Errorf("target got %s: %s", k, v)
		}
	}
}
