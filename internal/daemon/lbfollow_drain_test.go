package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestNodeDrainsWait: a node's wait for the drains a page started ends
// when the last target is idle; a target that never becomes idle holds
// it for its pool's drain timeout plus a second (the default timeout for
// a pool without one), logged naming it; the node's stop ends it at once.
func TestNodeDrainsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		fast, slow := make(chan struct{}), make(chan struct{})
		var d nodeDrains
		d.add(api.LBPool{Name: "web", DrainTimeoutMS: 2000}, "10.0.0.1:80", fast)
		d.add(api.LBPool{Name: "web", DrainTimeoutMS: 2000}, "10.0.0.2:80", slow)
		d.add(api.LBPool{Name: "web"}, "10.0.0.3:80", nil) // refused by the pool: not waited for
		if len(d) != 2 {
			t.Fatalf("%d drains recorded, want 2", len(d))
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			close(fast)
			time.Sleep(200 * time.Millisecond)
			close(slow)
		}()
		start := time.Now()
		d.wait(context.Background(), log)
		if took := time.Since(start); took != 300*time.Millisecond {
			t.Errorf("wait returned after %s, want 300ms (when the last target was idle)", took)
		}

		stuck := make(chan struct{})
		d = nil
		d.add(api.LBPool{Name: "web", DrainTimeoutMS: 2000}, "10.0.0.1:80", stuck)
		start = time.Now()
		d.wait(context.Background(), log)
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("wait for a stuck target returned after %s, want the drain timeout 2s + 1s", took)
		}
		if !strings.Contains(logs.String(), "target=10.0.0.1:80") {
			t.Errorf("the stuck target is not logged:\n%s", logs.String())
		}
		d = nil
		d.add(api.LBPool{Name: "web"}, "10.0.0.1:80", stuck)
		start = time.Now()
		d.wait(context.Background(), log)
		if took := time.Since(start); took != 31*time.Second {
			t.Errorf("wait with the default drain timeout returned after %s, want 30s + 1s", took)
		}

		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		start = time.Now()
		d.wait(ctx, log)
		if took := time.Since(start); took != time.Second {
			t.Errorf("wait returned %s after the start, want 1s (the node's stop)", took)
		}
	})
}
