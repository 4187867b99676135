package lb

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkWebSocketEcho measures the tunnel: parallel WebSocket clients
// each send a 64-byte message through the balancer to an echo target and
// wait for the echo. Allocations include the client's and the target's
// (coder/websocket), so compare runs, not absolute numbers.
func BenchmarkWebSocketEcho(b *testing.B) {
	be := wsEcho(b, nil, nil)
	lb := start(b, baseConfig(be.addr))
	benchEcho(b, "ws://"+lb.addr+"/ws")
}

// BenchmarkWebSocketDirect is the same load straight to the echo target,
// for scale: the difference to BenchmarkWebSocketEcho is the tunnel's
// cost (two more socket reads and writes per message, plus scheduling).
func BenchmarkWebSocketDirect(b *testing.B) {
	be := wsEcho(b, nil, nil)
	benchEcho(b, "ws://"+be.addr+"/ws")
}

// benchEcho runs parallel WebSocket clients of url, each sending a
// 64-byte message and reading its echo, for b.N messages.
func benchEcho(b *testing.B, url string) {
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.CloseNow()
		for pb.Next() {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				b.Error(err)
				return
			}
			if _, got, err := c.Read(ctx); err != nil || len(got) != len(msg) {
				b.Errorf("read: %d bytes, %v", len(got), err)
				return
			}
		}
	})
}
