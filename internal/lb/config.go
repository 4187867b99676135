// Package lb is Shoal's load balancer: listeners (TLS with SNI, HTTP/2),
// routes by host and path prefix, the reverse proxy for HTTP/1.1, HTTP/2
// and WebSocket, forwarded headers, request ids, retries with a budget,
// limits and request-smuggling defences, the access log, Prometheus
// metrics, live reconfiguration, and the admin handlers that drive pools.
//
// Target state, picking and stickiness belong to package pool; active
// health probes to package health. The Balancer wires them together.
package lb

import (
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// Config is a complete, validated balancer configuration. It is built by
// package config from lb.yaml, or in code by the controller. A Config is
// treated as immutable once passed to New or Reload.
//
// CONTRACT FILE: package config (lb.yaml) and the controller build this
// type; change fields only together with them.
type Config struct {
	Listeners []Listener
	Routes    []Route
	Pools     []PoolConfig
	Limits    Limits
	// TrustedProxies are the client addresses whose X-Forwarded-*,
	// Forwarded and X-Real-IP headers are kept and extended. From any other
	// client those headers are removed and set by the balancer alone.
	TrustedProxies []netip.Prefix
	// RetryBudget is the share (0-1) of live requests that may be retries;
	// default 0.2. MinRetries per second are always allowed (default 3).
	RetryBudget float64
	MinRetries  int
	// AccessLog receives one JSON line per request; nil disables it.
	AccessLog io.Writer
	// Maintenance, when set, answers every proxied request with 503, this
	// page and Retry-After (issue: maintenance mode).
	Maintenance *Maintenance
	// Observer, when non-nil, receives one RequestRecord per finished
	// request (see RequestObserver for its contract). Nil costs nothing.
	Observer RequestObserver
	Logger   *slog.Logger
}

// Listener is one address the balancer accepts clients on.
type Listener struct {
	Name string
	Addr string // "127.0.0.1:8080", ":443"
	// TLS certificates; empty means plain HTTP. With several, the one
	// matching the SNI name is chosen; HTTP/2 is offered through ALPN.
	TLS []Certificate
	// Managed makes the listener serve TLS with the certificates set by
	// SetCertificates (obtained through ACME), chosen by the client's SNI
	// name; TLS's files, if any, serve the names none of them has. A
	// Managed listener without files refuses a handshake for a name it
	// has no certificate for.
	Managed bool
	// Routes restricts this listener to the named routes; empty means all.
	Routes []string
}

// Certificate is a PEM certificate chain and key on disk.
type Certificate struct {
	CertFile, KeyFile string
}

// Route sends requests whose host and path match to a pool. Routes are
// matched most specific first: exact host before wildcard before any host,
// then longest path prefix.
type Route struct {
	Name string
	// Host is an exact name ("app.example.com"), a wildcard
	// ("*.example.com", one or more labels) or empty for any host.
	Host string
	// PathPrefix defaults to "/".
	PathPrefix string
	Pool       string
	// LongLived marks every request of the route as held open on purpose
	// by the server (long polls, streams): it is kept out of the latency
	// histograms that autoscaling and the dashboard read and counted as a
	// held exchange instead (see Balancer.LatencyHistogram).
	LongLived bool
	// LongLivedPaths are path prefixes, each starting with "/", whose
	// requests are held open on purpose, as LongLived is for the whole
	// route. A prefix matches whole segments unless it ends in "/", as
	// PathPrefix does.
	LongLivedPaths []string
	// Compression is how the route compresses answers; the zero value
	// compresses text types for clients that accept it (see Compression).
	Compression Compression
	// Cache is the route's asset cache of answers the target marks
	// shared and long-lived (see Cache and cacheFor); on by default.
	Cache Cache
}

// PoolConfig is one pool of targets and its policies.
type PoolConfig struct {
	Name      string
	Algorithm pool.Algorithm
	Targets   []pool.TargetSpec
	// Health enables active checks when non-nil.
	Health       *health.Spec
	Sticky       pool.Sticky
	Outlier      pool.Outlier
	SlowStart    time.Duration
	DrainTimeout time.Duration
	// Retries is the number of extra attempts for a retryable failure;
	// default 2 (three tries in all). Zero after defaults means 2; use -1
	// for none.
	Retries int
	// TryTimeout bounds one attempt until response headers; default 30s
	// (zero). Negative turns it off, for pools that serve long polls
	// (the request then waits for the target as long as the target takes;
	// a client that hangs up still ends it).
	TryTimeout time.Duration
	// ConnectTimeout bounds dialing a target; default 2s.
	ConnectTimeout time.Duration
	// Protocol is how the balancer speaks to the targets: HTTP/1.1 (zero),
	// h2c (HTTP/2 with prior knowledge, for gRPC; see ProtocolH2C), or,
	// with TLS, h2 (HTTP/2 over TLS, see ProtocolH2). Health checks of the
	// pool use it too.
	Protocol Protocol
	// TLS, when set, makes every connection to the targets TLS, verified
	// as TargetTLS says; Protocol is then http1 or h2. Requests for the
	// pool are served by the net/http path (the fast path hands them
	// over), and health checks go through the same TLS settings.
	TLS *TargetTLS
}

// Limits protect the balancer and the targets. Zero values take defaults.
type Limits struct {
	HeaderTimeout time.Duration // read of request headers (slowloris); default 10s
	ClientIdle    time.Duration // keep-alive idle, client side; default 60s
	UpstreamIdle  time.Duration // pooled upstream connection idle; default 4s (below Node's 5s)
	// MaxHeaderBytes bounds a request head, default 64KiB, at least
	// MinMaxHeaderBytes: on HTTP/1.1 the request line, the field lines and
	// the empty line that ends them, CRLFs included; on HTTP/2 the header
	// list size of RFC 9113 (names + values + 32 per field, pseudo-fields
	// included). A larger head gets 431.
	MaxHeaderBytes int
	// MaxRequestLine bounds the request line (method SP target SP
	// version, without CRLF; HTTP/2: the same built from :method and
	// :path); default 16KiB, like AWS ALB. Longer gets 414.
	MaxRequestLine int
	// MaxURIBytes bounds the request target alone; default 16KiB (so
	// MaxRequestLine decides). Longer gets 414.
	MaxURIBytes     int
	MaxBodyBytes    int64         // 0 = unlimited; larger gets 413
	MaxConns        int           // per listener; 0 = unlimited
	MaxIdlePerHost  int           // pooled upstream connections per target (per loop on the loops); default 1024
	WebSocketIdle   time.Duration // 0 = no idle limit on tunnels
	ShutdownTimeout time.Duration // graceful stop bound for Run; default 30s
	// DisableFastPath serves plain HTTP/1.1 listeners through net/http
	// only. By default they use the fast path (see evserve.go), which
	// hands any request outside its strict subset to net/http anyway.
	DisableFastPath bool
	// DisableTLSFastPath serves the HTTP/1.1 connections of TLS listeners
	// through net/http only. By default those whose ALPN is http/1.1 or
	// none move to the fast path's event loops after the handshake, with
	// the same subset and hand-over (see evtls.go). DisableFastPath turns
	// it off too.
	DisableTLSFastPath bool
	// DisableH2FastPath serves the HTTP/2 connections of TLS listeners
	// (ALPN h2) with golang.org/x/net/http2's server. By default, when
	// the TLS fast path is on, they move to the same event loops and are
	// served by the balancer's own HTTP/2 server (evh2.go); streams
	// outside the fast subset go to the net/http path's handler either
	// way.
	DisableH2FastPath bool
	// DisableTLSRecords keeps every TLS connection of the TLS fast path
	// on crypto/tls. By default the loops protect TLS 1.3 records
	// themselves once crypto/tls did the handshake (tlsrec.go): an idle
	// connection then keeps its keys alone, not crypto/tls's buffers and
	// cipher states. TLS 1.2 and anything the handshake's check does not
	// prove stay on crypto/tls either way.
	DisableTLSRecords bool
	// Loops is the number of event loops serving each plain listener's
	// fast path; 0 means one per CPU (runtime.NumCPU, at most GOMAXPROCS;
	// at most 64).
	Loops int
}

// Maintenance is the answer the balancer gives while in maintenance mode.
type Maintenance struct {
	Page       string        // HTML body
	RetryAfter time.Duration // Retry-After header, whole seconds
}
