package lb

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkProxy measures the whole proxy path: a keep-alive client, the
// balancer and a target answering 100 bytes, all in this process over
// loopback. It reports the balancer's allocations together with the
// client's and the target's, so compare runs, not absolute numbers.
func BenchmarkProxy(b *testing.B) {
	be := newBackend(b, benchHandler)
	lb := start(b, baseConfig(be.addr))
	benchGets(b, lb.url+"/bench")
}

// BenchmarkDirect is the same load straight to the target, for scale.
func BenchmarkDirect(b *testing.B) {
	be := newBackend(b, benchHandler)
	benchGets(b, be.URL+"/bench")
}

var benchBody = strings.Repeat("x", 100)

func benchHandler(w http.ResponseWriter, r *http.Request) { io.WriteString(w, benchBody) }

// benchGets runs parallel keep-alive GETs of url, reading each answer
// whole, for b.N requests.
func benchGets(b *testing.B, url string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 512)
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkProxyNetHTTP is BenchmarkProxy through the net/http path (the
// fast path off), as TLS and HTTP/2 clients are served.
func BenchmarkProxyNetHTTP(b *testing.B) {
	be := newBackend(b, benchHandler)
	cfg := baseConfig(be.addr)
	cfg.Limits.DisableFastPath = true
	lb := start(b, cfg)
	benchGets(b, lb.url+"/bench")
}
