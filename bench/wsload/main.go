// Command wsload measures WebSocket echo throughput and round-trip time
// through a proxy: it opens -c connections to -url, and on each one sends
// a message and waits for its echo, back to back, for -d. It prints one
// line: "conns=N msgs=N msgs_per_sec=X p50_ms=X p99_ms=X errors=N".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "WebSocket URL")
	conns := flag.Int("c", 64, "connections")
	dur := flag.Duration("d", 10*time.Second, "duration of the measurement")
	size := flag.Int("size", 64, "message size in bytes")
	flag.Parse()

	msg := make([]byte, *size)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur+30*time.Second)
	defer cancel()

	// Connect everything first so that the measured window is steady state.
	cs := make([]*websocket.Conn, 0, *conns)
	for i := 0; i < *conns; i++ {
		c, _, err := websocket.Dial(ctx, *url, nil)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		cs = append(cs, c)
	}
	end := time.Now().Add(*dur)
	var (
		mu     sync.Mutex
		rtts   []time.Duration
		errors int
		wg     sync.WaitGroup
	)
	start := time.Now()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<14)
			bad := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					bad++
					break
				}
				_, got, err := c.Read(ctx)
				if err != nil || len(got) != len(msg) {
					bad++
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			rtts = append(rtts, local...)
			errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, c := range cs {
		c.Close(websocket.StatusNormalClosure, "")
	}
	if len(rtts) == 0 {
		fmt.Fprintln(os.Stderr, "wsload: no message completed")
		os.Exit(1)
	}
	slices.Sort(rtts)
	pct := func(p float64) float64 {
		return float64(rtts[int(p*float64(len(rtts)-1))]) / float64(time.Millisecond)
	}
	fmt.Printf("conns=%d msgs=%d msgs_per_sec=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
		len(cs), len(rtts), float64(len(rtts))/elapsed.Seconds(), pct(0.50), pct(0.99), errors)
}
