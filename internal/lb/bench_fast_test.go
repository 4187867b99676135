package lb

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
)

// BenchmarkFastPath drives the fast path with a raw client and a raw
// target that allocate nothing per request, so allocs/op are the
// balancer's own: an answer that is not compressed (no Accept-Encoding,
// or a type that is not compressible) must stay at zero. The compressed
// cases report the loop's cost per compressed answer (SetBytes: the
// uncompressed size).
func BenchmarkFastPath(b *testing.B) {
	for _, bc := range []struct {
		name, accept, ctype string
		size                int
	}{
		{"identity", "", "text/plain", 100},
		{"uncompressible", "gzip, br", "image/png", 100},
		{"small", "gzip, br", "text/plain", 100},
		{"gzip-50k", "gzip", "text/html", 50 << 10},
		{"zstd-50k", "zstd", "text/html", 50 << 10},
		{"br-50k", "br", "text/html", 50 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := textBody(bc.size, 1)
			resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", bc.ctype, len(body), body)
			target := rawTarget(b, resp)
			lb := start(b, baseConfig(target))
			c, err := net.Dial("tcp", lb.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := "GET /bench HTTP/1.1\r\nHost: a\r\n"
			if bc.accept != "" {
				req += "Accept-Encoding: " + bc.accept + "\r\n"
			}
			reqb := []byte(req + "\r\n")
			br := bufio.NewReaderSize(c, 64<<10)
			round := func() {
				if _, err := c.Write(reqb); err != nil {
					b.Fatal(err)
				}
				if err := skipResponse(br); err != nil {
					b.Fatal(err)
				}
			}
			round() // warm: buffers, the target connection, an encoder
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				round()
			}
		})
	}
}

// rawTarget serves resp to every request on every connection, reading
// heads with no allocation per request.
func rawTarget(b *testing.B, resp []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// skipResponse reads one response (Content-Length or chunked) from br
// without allocating.
func skipResponse(br *bufio.Reader) error {
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length = atoiBytes(bytes.TrimSpace(v))
		}
		if bytes.Equal(line, []byte("Transfer-Encoding: chunked\r\n")) {
			chunked = true
		}
	}
	if !chunked {
		_, err := br.Discard(max(length, 0))
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return err
		}
		if n == 0 {
			_, err := br.ReadSlice('\n')
			return err
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func atoiBytes(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}
