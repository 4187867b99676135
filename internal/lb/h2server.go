package lb

import (
	"context"
	"crypto/tls"
	"net/http"

	"golang.org/x/net/http2"

	"github.com/shoal-dev/shoal/internal/xconnect"
)

func init() {
	// x/net/http2 has read GODEBUG by now (xconnect's package doc).
	xconnect.Restore()
}

// h2MaxFrameSize is the largest frame the HTTP/2 server reads, and
// advertises in SETTINGS_MAX_FRAME_SIZE: RFC 9113's initial value, as
// HAProxy and nginx use. Go's default (1 MiB) let a client send a HEADERS
// frame larger than the 16 KiB a peer may assume before it reads the
// server's settings (h2spec 4.2/3 expects FRAME_SIZE_ERROR).
const h2MaxFrameSize = 16 << 10

// serveHTTP2 makes srv, a TLS listener's server, serve HTTP/2 with
// golang.org/x/net/http2 rather than net/http's bundled copy: x/net's
// server can offer extended CONNECT (RFC 8441, see xconnect), which
// browsers use for WebSockets on a page served over HTTP/2, and it reads
// the connection through h2Guard (conformance fixes its frames need
// before the server sees them). Shutdown of srv sends GOAWAY to these
// connections as before (ConfigureServer registers it).
func serveHTTP2(srv *http.Server) error {
	h2 := &http2.Server{MaxReadFrameSize: h2MaxFrameSize}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	srv.TLSNextProto["h2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// What x/net's own TLSNextProto entry does, with the guard.
		ctx := context.Background()
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(newH2Guard(c), &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
	}
	return nil
}
