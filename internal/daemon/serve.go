package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// serveUntilDone serves srv on ln in g until ctx ends, then shuts srv down,
// giving requests in flight grace to end and closing what outlives it. A
// Serve error other than http.ErrServerClosed ends g with an error that
// names the server (what).
func serveUntilDone(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener, what string, grace time.Duration) {
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	})
}
