package agent_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestHeartbeatsDuringFetch: while starts wait on an artifact fetch that
// the artifact server holds (a slow server, issue 14: agents fetching an
// artifact were declared lost), the agent answers the server's heartbeat
// (GET /v1/host), its list and its exits follower, every time, over the
// same client the starts use, and the starts still succeed once the fetch
// completes.
func TestHeartbeatsDuringFetch(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{PollWait: 50 * time.Millisecond})
	ctx := testenv.Context(t, time.Minute)
	release := f.Artifacts.Hold()
	defer release()
	starts := 4
	errs := make(chan error, starts)
	var wg sync.WaitGroup
	for i := range starts {
		wg.Go(func() {
			_, err := f.Client.Start(ctx, 1, launch(t, fmt.Sprintf("web-%d", i), f.Digest))
			errs <- err
		})
	}
	if err := testenv.WaitFor(ctx, func() error {
		if n := f.Artifacts.Fetches(f.Digest); n != 1 {
			return fmt.Errorf("%d fetches in flight, want 1", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		info, err := f.Client.Host(ctx)
		if err != nil {
			t.Fatalf("heartbeat %d during the fetch: %v", i, err)
		}
		if info.Instances != 0 {
			t.Fatalf("heartbeat %d: %d instances before the artifact arrived", i, info.Instances)
		}
		if _, err := f.Client.List(ctx); err != nil {
			t.Fatalf("list %d during the fetch: %v", i, err)
		}
		if _, err := f.Client.Exits(ctx, "", 0); err != nil {
			t.Fatalf("exits %d during the fetch: %v", i, err)
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("a start returned while its artifact was held: %v", err)
	default:
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("start: %v", err)
		}
	}
	if info, err := f.Client.Host(ctx); err != nil || info.Instances != starts {
		t.Errorf("heartbeat after the starts: %+v, %v; want %d instances", info, err, starts)
	}
}
