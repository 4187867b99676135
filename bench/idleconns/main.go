// Command idleconns measures what idle keep-alive client connections cost
// a proxy in memory: it reads the resident memory of the given processes,
// opens -n connections to -addr, makes one request on each (so every
// connection has served a request and now waits for the next), reads the
// memory again, and prints the difference per connection.
//
//	go run ./bench/idleconns -addr 127.0.0.1:18080 -n 3000 -pids 1234
//
// -pids takes several process ids (nginx's workers) and sums them. The
// process needs a file-descriptor limit above -n (Go raises its own soft
// limit to the hard one).
//
// -tls makes every connection a TLS one (HTTP/1.1 through ALPN; the
// proxy's certificate is not checked). -metrics names a Prometheus
// /metrics URL of a Go process (shoal's admin API): its Go heap in use
// (go_memstats_heap_inuse_bytes) is read along with the resident memory,
// with the bearer token in -token-file (shoal's .shoal/admin.token).
// -after-close waits that long once the connections are closed and reads
// both again, to show what the proxy gave back.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "proxy address")
	n := flag.Int("n", 3000, "connections to open")
	pids := flag.String("pids", "", "comma-separated process ids whose memory is measured")
	useTLS := flag.Bool("tls", false, "connect with TLS (HTTP/1.1 through ALPN; the certificate is not checked)")
	metrics := flag.String("metrics", "", "Prometheus /metrics URL of the proxy, for its Go heap in use")
	tokenFile := flag.String("token-file", "", "file holding the bearer token for -metrics")
	afterClose := flag.Duration("after-close", 0, "measure again this long after closing the connections (0: do not)")
	flag.Parse()
	o := opts{addr: *addr, n: *n, tls: *useTLS, metrics: *metrics, afterClose: *afterClose}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "idleconns:", err)
			os.Exit(1)
		}
		o.token = strings.TrimSpace(string(b))
	}
	if err := run(o, *pids); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

type opts struct {
	addr       string
	n          int
	tls        bool
	metrics    string
	token      string // bearer token for metrics
	afterClose time.Duration
}

func run(o opts, pidList string) error {
	var pids []int
	for _, f := range strings.Split(pidList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("pid %q: %w", f, err)
		}
		pids = append(pids, p)
	}
	if len(pids) == 0 {
		return fmt.Errorf("no -pids given")
	}
	n := o.n
	before, err := measure(pids, o)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = conns[:0]
	}
	defer closeAll()
	req := "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	for i := range n {
		c, err := dial(o.addr, o.tls, tc)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return fmt.Errorf("connection %d: write: %w", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return fmt.Errorf("connection %d: read: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			return fmt.Errorf("connection %d: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
	}
	after, err := measure(pids, o)
	if err != nil {
		return err
	}
	fmt.Printf("conns=%d rss_before_kib=%d rss_after_kib=%d per_conn_bytes=%d",
		n, before.rssKiB, after.rssKiB, (after.rssKiB-before.rssKiB)*1024/int64(n))
	if o.metrics != "" {
		fmt.Printf(" heap_before_kib=%d heap_after_kib=%d heap_per_conn_bytes=%d",
			before.heap>>10, after.heap>>10, (after.heap-before.heap)/int64(n))
	}
	if o.afterClose > 0 {
		closeAll()
		time.Sleep(o.afterClose)
		closed, err := measure(pids, o)
		if err != nil {
			return err
		}
		fmt.Printf(" rss_closed_kib=%d", closed.rssKiB)
		if o.metrics != "" {
			fmt.Printf(" heap_closed_kib=%d", closed.heap>>10)
		}
	}
	fmt.Println()
	return nil
}

// dial opens one connection, with TLS when useTLS.
func dial(addr string, useTLS bool, tc *tls.Config) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil || !useTLS {
		return c, err
	}
	t := tls.Client(c, tc)
	t.SetDeadline(time.Now().Add(10 * time.Second))
	if err := t.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return t, nil
}

// sample is the memory of the measured processes at one moment.
type sample struct {
	rssKiB int64
	heap   int64 // bytes of Go heap in use; 0 without -metrics
}

func measure(pids []int, o opts) (sample, error) {
	var s sample
	var err error
	if s.rssKiB, err = rss(pids); err != nil {
		return s, err
	}
	if o.metrics != "" {
		if s.heap, err = heapInUse(o.metrics, o.token); err != nil {
			return s, err
		}
	}
	return s, nil
}

// heapInUse reads go_memstats_heap_inuse_bytes from a /metrics URL.
func heapInUse(url, token string) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "go_memstats_heap_inuse_bytes" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("metrics: %s: %w", sc.Text(), err)
			}
			return int64(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	return 0, fmt.Errorf("metrics: %s has no go_memstats_heap_inuse_bytes", url)
}

// rss sums VmRSS (KiB) of pids.
func rss(pids []int) (int64, error) {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				v, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("pid %d: VmRSS %q", p, f[1])
				}
				total += v
			}
		}
	}
	return total, nil
}
