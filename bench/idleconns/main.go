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
package main

import (
	"bufio"
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
	flag.Parse()
	if err := run(*addr, *n, *pids); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(addr string, n int, pidList string) error {
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
	before, err := rss(pids)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
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
	after, err := rss(pids)
	if err != nil {
		return err
	}
	fmt.Printf("conns=%d rss_before_kib=%d rss_after_kib=%d per_conn_bytes=%d\n",
		n, before, after, (after-before)*1024/int64(n))
	return nil
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
