package config

import (
	"net/netip"
	"time"

	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// This file holds the lb.yaml types as an operator writes them. Every field
// documents its default; docs/lb-configuration.md is the same reference in
// prose. Relative file paths (certificates, secret_file, token_file,
// access_log) are resolved against the directory of lb.yaml.

// LBFile is a loaded, validated lb.yaml: the balancer configuration and
// the settings of the admin listener that serves it. The admin listener is
// not part of lb.Config because the balancer does not own it: the command
// that runs the balancer (shoal lb) serves the admin API next to it.
type LBFile struct {
	// Balancer is ready for lb.New or Balancer.Reload, except for the
	// fields the caller owns: AccessLog (see AccessLog below) and Logger.
	Balancer lb.Config
	// Admin is where the admin API listens and where its token lives.
	Admin AdminConfig
	// AccessLog is where the access log goes: "" (off), "stdout", "stderr"
	// or an absolute file path. OpenAccessLog opens it.
	AccessLog string
	// Server, when set, makes this balancer a node that follows a
	// `shoal server`: its routes, pools and targets come from the server,
	// and the file has none. Nil for a balancer of static routes and pools.
	Server *LBServer
	// VIP, when set, makes this balancer one of the nodes that share a
	// floating address through keepalived (VRRP). Nil: no floating
	// address.
	VIP *LBVIP
	// Warnings are the file's deprecated keys (such as listeners[].addr,
	// now listen), each with file:line:column and the key to use instead,
	// in file order. They do not stop the file from loading; the command
	// that loads it shows them to the operator.
	Warnings Problems
}

// LBServer is lb.yaml's server section: the `shoal server` a balancer
// node follows, and the node's identity in the fleet.
type LBServer struct {
	// URLs are the fleet URLs (https://host:port, fleet.url) of the
	// server, or of every server of a cluster, in the file's order; at
	// least one.
	URLs []string
	// JoinTokenFile is an absolute path, or "" once the node has joined.
	JoinTokenFile string
	// Name is the node's name in the fleet.
	Name string
	// DataDir is an absolute path: the node's key and certificates
	// (pki/) and the last configuration it applied (lb-config.json).
	DataDir string
}

// LBVIP is lb.yaml's vip section: a virtual IP address that keepalived
// (VRRP version 3, unicast) moves between the balancer nodes, held by the
// node whose balancer is healthy (daemon's vipKeeper runs keepalived).
type LBVIP struct {
	// Address is the floating address with its prefix length, such as
	// 10.0.0.100/24 (an address without a length is /32 or /128).
	Address netip.Prefix
	// Interface is the network interface the address is added to.
	Interface string
	// Peers are the other nodes' addresses (unicast VRRP), at least one.
	Peers []netip.Addr
	// Source is the address this node sends its adverts from; invalid
	// (the zero Addr) for the interface's primary address.
	Source netip.Addr
	// Priority is 1-254; the node with the highest takes the address
	// first (ties: the highest source address). Once held, the address
	// stays where it is (nopreempt) until its holder fails.
	Priority int
	// RouterID is the VRRP virtual router id, 1-255, the same on every
	// node that shares this address and unique on the network segment.
	RouterID int
	// AdvertInterval is the VRRP advertisement interval, a multiple of
	// 10ms from 10ms to 40.95s. A backup takes the address after about
	// three intervals without an advert.
	AdvertInterval time.Duration
	// Keepalived is the keepalived executable: an absolute path, or a
	// name looked up in PATH when the balancer starts.
	Keepalived string
	// Dir is an absolute path: the directory of keepalived's
	// configuration, pid files and notify FIFO (keepalived/ in the data
	// directory: server.data_dir, or .shoal next to lb.yaml).
	Dir string
	// ReservedIP, when set, is a cloud provider's reserved IP that the
	// node keepalived makes MASTER points at its own machine; nil for
	// none.
	ReservedIP *LBReservedIP
}

// LBReservedIP is lb.yaml's vip.reserved_ip: the cloud's alternative to
// an address on the interface (issue 17). keepalived still elects the
// active node; the node that becomes MASTER asks the provider's API to
// point the reserved IP at its own machine (daemon/lbvip_reserved.go).
type LBReservedIP struct {
	// Provider is the cloud API: "digitalocean".
	Provider string
	// Address is the reserved IP.
	Address netip.Addr
	// TokenFile is an absolute path, or "" for the environment
	// (DIGITALOCEAN_TOKEN). The token is never logged.
	TokenFile string
	// APIURL is the provider's API address; "" for the provider's own.
	APIURL string
	// MachineID is this node's machine (a droplet id); "" means asked
	// of the provider's metadata service at start.
	MachineID string
}

// AdminConfig is the admin API listener of a balancer: a TCP address
// when Addr (admin.listen) is set, else a Unix socket at Socket.
type AdminConfig struct {
	// Addr is host:port (admin.listen), or "" (the default) for no TCP
	// listener. The API
	// needs a bearer token on every route, but keep it on loopback unless
	// a firewall protects it.
	Addr string
	// Socket is the absolute path of the Unix socket (mode 0600) the
	// admin API is served on when Addr is "": admin.socket, default
	// .shoal/admin.sock next to lb.yaml (like HAProxy's stats socket).
	// "" when Addr is set.
	Socket string
	// TokenFile is an absolute path; default .shoal/admin.token next to
	// lb.yaml. It is created with a random token (mode 0600) when missing.
	TokenFile string
}

// DefaultAdminAddr is the admin address the lb client verbs try when
// they have neither -admin nor an lb.yaml to read it from.
const DefaultAdminAddr = "127.0.0.1:9090"

// MaxSocketPath is the longest Unix socket path Linux accepts (sun_path
// is 108 bytes, NUL included).
const MaxSocketPath = 107

// lbDoc is the top level of lb.yaml.
type lbDoc struct {
	// Listeners are the addresses clients connect to. At least one.
	Listeners []listenerDoc `yaml:"listeners"`
	// Routes map host and path prefix to a pool. At least one.
	Routes []routeDoc `yaml:"routes"`
	// Pools are the named sets of targets. At least one.
	Pools []poolDoc `yaml:"pools"`
	// Limits protect the balancer and the targets; every field has a default.
	Limits limitsDoc `yaml:"limits"`
	// TrustedProxies lists the CIDRs ("10.0.0.0/8") or single addresses of
	// proxies in front of the balancer whose X-Forwarded-For, Forwarded and
	// X-Real-IP headers are believed. Default: none; those headers are
	// replaced for every client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RetryBudget is the share (0-1) of live requests that may be retries;
	// default 0.2.
	RetryBudget *float64 `yaml:"retry_budget"`
	// MinRetries per second are allowed whatever the budget; default 3.
	MinRetries *int `yaml:"min_retries"`
	// AccessLog is "stdout", "stderr", "off" or a file path (appended to).
	// Default: off.
	AccessLog string `yaml:"access_log"`
	// Admin configures the admin API listener.
	Admin adminDoc `yaml:"admin"`
	// Server makes this balancer a node that follows a `shoal server`:
	// routes, pools (with their sticky keys and health checks) and
	// targets come from the server, so routes and pools must not be set.
	// Listeners, limits, trusted proxies, the access log and the admin
	// API stay this file's. Default: none (a static balancer).
	Server *serverDoc `yaml:"server"`
	// VIP shares a floating address between balancer nodes with
	// keepalived (VRRP). Default: none.
	VIP *vipDoc `yaml:"vip"`
}

type vipDoc struct {
	// Address is the floating address with its prefix length, such as
	// 10.0.0.100/24; the same on every node. Required.
	Address string `yaml:"address"`
	// Interface is the network interface that carries the address, such
	// as eth0. Required.
	Interface string `yaml:"interface"`
	// Peers are the addresses of the other balancer nodes that share the
	// address; VRRP adverts are sent to them (unicast). At least one.
	Peers []string `yaml:"peers"`
	// Source is this node's own address that adverts are sent from;
	// default the interface's primary address.
	Source string `yaml:"source"`
	// Priority (1-254) decides which node takes the address first;
	// default 100. Once held, the address does not move back.
	Priority *int `yaml:"priority"`
	// RouterID is the VRRP virtual router id, 1-255, the same on every
	// node of this address and unique on the network; default 51.
	RouterID *int `yaml:"router_id"`
	// AdvertInterval is the VRRP advertisement interval, a multiple of
	// 10ms from 10ms to 40.95s; default 250ms. A host's loss is noticed
	// after about three intervals.
	AdvertInterval Duration `yaml:"advert_interval"`
	// Keepalived is the keepalived executable; default "keepalived" in
	// PATH (Debian: apt-get install keepalived).
	Keepalived string `yaml:"keepalived"`
	// ReservedIP makes the node that keepalived elects point a cloud
	// provider's reserved IP at its own machine.
	ReservedIP *reservedIPDoc `yaml:"reserved_ip"`
}

type reservedIPDoc struct {
	// Provider is the cloud API: digitalocean. Required.
	Provider string `yaml:"provider"`
	// Address is the reserved IP, such as 203.0.113.7. Required.
	Address string `yaml:"address"`
	// TokenFile holds the API token (mode 0600); default the
	// environment variable DIGITALOCEAN_TOKEN. Never logged.
	TokenFile string `yaml:"token_file"`
	// APIURL is the provider's API address; default its own
	// (https://api.digitalocean.com/).
	APIURL string `yaml:"api_url"`
	// DropletID is this node's droplet; default asked of the metadata
	// service (http://169.254.169.254/metadata/v1/id) at start.
	DropletID string `yaml:"droplet_id"`
}

type serverDoc struct {
	// URL is the server's fleet URL, its server.yaml fleet.url, such as
	// https://10.0.0.1:7443; or a list of the fleet URLs of every server
	// of a cluster: the node follows through one at a time and moves to
	// the next when one cannot be reached (any server leads it to the
	// leader), so it keeps following while a server is down. Required.
	URL URLList `yaml:"url"`
	// JoinTokenFile holds a one-time join token of role lb (`shoal
	// join-token --role lb` on the server). Read only while the node has
	// no certificate; required until then.
	JoinTokenFile string `yaml:"join_token_file"`
	// Name is the node's name in the fleet: lowercase letters, digits,
	// '.' and '-', up to 63. Default: the machine's host name.
	Name string `yaml:"name"`
	// DataDir holds the node's key and certificates and the last
	// configuration it applied, which it serves at its next start while
	// the server cannot be reached. Default: .shoal next to lb.yaml.
	DataDir string `yaml:"data_dir"`
}

type listenerDoc struct {
	// Name identifies the listener in logs, metrics and status. Required,
	// unique.
	Name string `yaml:"name"`
	// Addr is host:port to bind, such as ":80", "0.0.0.0:443" or
	// "127.0.0.1:0" (any free port). Required. Written listen, as
	// balancer.listen in shoal.yaml; addr is its deprecated name.
	Addr string `yaml:"listen" deprecated:"addr"`
	// TLS lists certificate/key pairs; empty means plain HTTP. With several,
	// the one matching the client's SNI name is used. HTTP/2 is offered on
	// TLS listeners.
	TLS []certDoc `yaml:"tls"`
	// ACME makes the listener serve TLS with the certificates the
	// followed server obtains from an ACME CA (server.yaml's
	// balancer.acme), chosen by the client's SNI name and replaced at each
	// renewal without a reload; tls pairs, if any, serve the other names.
	// Only for a node that follows a server (server section). Default
	// false.
	ACME bool `yaml:"acme"`
	// Routes restricts the listener to these route names; default all.
	Routes []string `yaml:"routes"`
}

type certDoc struct {
	// Cert is a PEM certificate chain file. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM private key file of Cert. Required.
	Key string `yaml:"key"`
}

type routeDoc struct {
	// Name identifies the route. Required, unique.
	Name string `yaml:"name"`
	// Host is an exact host name ("app.example.com"), a wildcard
	// ("*.example.com") or empty for any host.
	Host string `yaml:"host"`
	// PathPrefix matches the start of the request path; default "/".
	// The most specific route wins: exact host, then wildcard, then any
	// host; then the longest prefix.
	PathPrefix string `yaml:"path_prefix"`
	// Pool is the name of the pool that serves the route. Required.
	Pool string `yaml:"pool"`
	// LongLived marks every request of the route as held open on purpose
	// by the app (long polls, streams): such requests are kept out of the
	// latency percentiles (autoscaling, dashboard, the request-duration
	// metric) and counted as held streams instead. Default false.
	// Server-sent events (text/event-stream), SockJS streaming and
	// polling under the pool's sticky.sockjs_prefixes and socket.io
	// polling are recognised without it.
	LongLived bool `yaml:"long_lived"`
	// LongLivedPaths are path prefixes under the route, each starting
	// with "/", whose requests are held open on purpose, as long_lived is
	// for the whole route. "/poll" matches "/poll" and "/poll/x", not
	// "/polls"; a prefix ending in "/" matches anything below it.
	LongLivedPaths []string `yaml:"long_lived_paths"`
	// Compression compresses the route's answers; absent, text types are
	// compressed for clients that accept it. Written as balancer.compression
	// in shoal.yaml (see Compression).
	Compression *Compression `yaml:"compression"`
	// Cache is the route's asset cache; absent, on.
	// Written as balancer.cache in shoal.yaml (see Cache).
	Cache *Cache `yaml:"cache"`
}

type poolDoc struct {
	// Name identifies the pool. Required, unique.
	Name string `yaml:"name"`
	// Algorithm is round_robin (default, weighted), least_requests or p2c
	// (power of two choices on latency x load).
	Algorithm pool.Algorithm `yaml:"algorithm"`
	// Targets are the initial targets. May be empty: targets can be added
	// through the admin API.
	Targets []targetDoc `yaml:"targets"`
	// HealthCheck enables active HTTP health checks when present.
	// Written health, as in shoal.yaml; health_check is its deprecated
	// name.
	HealthCheck *healthDoc `yaml:"health" deprecated:"health_check"`
	// Sticky enables session affinity when present.
	Sticky *stickyDoc `yaml:"sticky"`
	// Outlier enables passive ejection when consecutive_failures is set.
	Outlier outlierDoc `yaml:"outlier"`
	// SlowStart ramps a new target from 10% to 100% of its weight over this
	// window; default 0 (off).
	SlowStart Duration `yaml:"slow_start"`
	// DrainTimeout bounds the drain of a removed target; default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Retries is the number of extra attempts on another target for an
	// idempotent request that failed before any response; default 2, 0
	// disables retries.
	Retries *int `yaml:"retries"`
	// TryTimeout bounds one attempt until response headers; default 30s.
	// "off" (or 0) turns it off, for long-polling routes whose answers
	// come when there is news.
	TryTimeout TimeoutOrOff `yaml:"try_timeout"`
	// ConnectTimeout bounds dialing a target; default 2s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Protocol is how the balancer speaks to the targets: http1 (default,
	// HTTP/1.1), h2c (HTTP/2 without TLS, with prior knowledge: for gRPC
	// services; trailers pass through; health checks use it too), or,
	// with tls, h2 (HTTP/2 over TLS: only h2 is offered in ALPN, and a
	// target that does not agree is refused).
	Protocol string `yaml:"protocol"`
	// TLS, when present, makes the connections to the targets TLS (HTTPS
	// targets), health checks and WebSocket tunnels included.
	TLS *poolTLSDoc `yaml:"tls"`
}

// poolTLSDoc is how a pool's targets are reached over TLS. The target's
// certificate is verified by default.
type poolTLSDoc struct {
	// CAFile is a PEM file of the CAs that verify the targets'
	// certificates (they alone); default the system roots. Relative to
	// the file's directory; reread at every reload.
	CAFile string `yaml:"ca_file"`
	// ServerName is sent as SNI and must be in the targets' certificates;
	// default each target's host (a name or IP address).
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate and key (PEM), for
	// targets that require mutual TLS. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any target certificate: encrypted but
	// not authenticated. For tests only; not with ca_file.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

type targetDoc struct {
	// Addr is the target's host:port. Required, unique in the pool.
	Addr string `yaml:"addr"`
	// Weight is 1-256; default 1.
	Weight int `yaml:"weight"`
}

type healthDoc struct {
	// Path is the request path of the probe; default "/".
	Path string `yaml:"path"`
	// Host is the Host header of the probe; default the target's
	// host:port.
	Host string `yaml:"host"`
	// Interval between probes of one target; default 5s.
	Interval Duration `yaml:"interval"`
	// Timeout of one probe; default 2s, at most interval.
	Timeout Duration `yaml:"timeout"`
	// HealthyThreshold is the consecutive passes that make a target
	// healthy; default 2.
	HealthyThreshold *int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is the consecutive failures that make a target
	// unhealthy; default 3.
	UnhealthyThreshold *int `yaml:"unhealthy_threshold"`
	// Statuses are the passing response statuses, as a comma-separated
	// list of codes and ranges; default "200-399".
	Statuses AppStatuses `yaml:"statuses"`
	// Jitter spreads probes: each interval is scaled by a random factor
	// in [1-jitter, 1+jitter]; 0-1, default 0 (none).
	Jitter float64 `yaml:"jitter"`
}

type stickyDoc struct {
	// Cookie is the name of the affinity cookie the balancer sets; empty
	// means no cookie affinity.
	Cookie string `yaml:"cookie"`
	// TTL is the cookie lifetime; default 0, a browser-session cookie.
	TTL Duration `yaml:"ttl"`
	// SecretFile holds the key (at least 16 bytes) that signs cookies.
	// Required with cookie. It is a file, not a generated value, so that
	// pins survive a balancer restart and are shared by every balancer
	// node behind one address: give all nodes the same file.
	SecretFile string `yaml:"secret_file"`
	// SockJSPrefixes are path prefixes (such as "/sockjs", Meteor's DDP)
	// under which SockJS sessions are pinned by their session id; SockJS
	// sends no cookie. Default none.
	SockJSPrefixes []string `yaml:"sockjs_prefixes"`
}

type outlierDoc struct {
	// ConsecutiveFailures ejects a target after this many connection
	// errors or 5xx in a row; default 0 (off).
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjection is the first ejection's length, growing with each
	// ejection; default 30s.
	BaseEjection Duration `yaml:"base_ejection"`
	// MaxEjection caps one ejection; default 300s.
	MaxEjection Duration `yaml:"max_ejection"`
	// MaxEjectedPercent caps the share of targets ejected at once (1-100);
	// default 50.
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
}

type limitsDoc struct {
	// HeaderTimeout bounds reading request headers (slowloris); default 10s.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// ClientIdle closes idle client keep-alive connections; default 60s.
	ClientIdle Duration `yaml:"client_idle"`
	// UpstreamIdle closes idle pooled upstream connections; default 4s,
	// below Node.js's 5s keep-alive timeout.
	UpstreamIdle Duration `yaml:"upstream_idle"`
	// MaxHeaderBytes: a larger request head (request line, fields and
	// the final empty line; HTTP/2: the header list size) gets 431;
	// default 64KiB, at least 1KiB.
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
	// MaxRequestLine: a longer request line (method, target and
	// version) gets 414; default 16KiB, like AWS ALB.
	MaxRequestLine Size `yaml:"max_request_line"`
	// MaxURIBytes: longer request URIs get 414; default 16KiB (so
	// max_request_line decides).
	MaxURIBytes Size `yaml:"max_uri_bytes"`
	// MaxBodyBytes: larger request bodies get 413; default 0 (unlimited).
	MaxBodyBytes Size `yaml:"max_body_bytes"`
	// MaxConns caps open client connections per listener; default 0
	// (unlimited).
	MaxConns int `yaml:"max_conns"`
	// MaxIdlePerHost caps pooled idle connections per target; default 1024.
	MaxIdlePerHost int `yaml:"max_idle_per_host"`
	// WebSocketIdle closes WebSocket tunnels idle this long; default 0
	// (never).
	WebSocketIdle Duration `yaml:"websocket_idle"`
	// ShutdownTimeout bounds the graceful drain at exit; default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// FastPath serves plain HTTP/1.1 listeners with the balancer's own
	// HTTP/1.1 code for the common strict subset of requests, handing the
	// rest to net/http behind the smuggling guard; default true. Set false
	// to serve everything through net/http.
	FastPath *bool `yaml:"fast_path"`
	// TLSFastPath serves TLS listeners' HTTP/1.1 connections on the same
	// event loops after the handshake; default true. Set false to serve
	// them through net/http (fast_path: false turns it off too).
	TLSFastPath *bool `yaml:"tls_fast_path"`
	// H2FastPath serves TLS listeners' HTTP/2 connections (ALPN h2) on
	// the same event loops, with the balancer's own HTTP/2 server;
	// default true. Set false to serve them with Go's HTTP/2 server
	// (tls_fast_path: false turns it off too).
	H2FastPath *bool `yaml:"h2_fast_path"`
	// TLSRecords lets the event loops protect the records of TLS 1.3
	// connections themselves after crypto/tls's handshake (less memory
	// per idle connection); default true. Set false to keep them on
	// crypto/tls. TLS 1.2 stays on crypto/tls.
	TLSRecords *bool `yaml:"tls_records"`
	// Loops is the number of event loops (threads) serving each plain
	// listener's fast path; default 0: one per CPU the process may use.
	Loops int `yaml:"loops"`
}

type adminDoc struct {
	// Addr is the admin API's host:port, written listen as admin.listen
	// in shoal.yaml (addr is its deprecated name). Default: none, the
	// admin API is served on a Unix socket only (see socket).
	Addr string `yaml:"listen" deprecated:"addr"`
	// Socket is the path of the admin API's Unix socket when listen is not
	// set; default .shoal/admin.sock next to lb.yaml. Created with mode
	// 0600; at most 107 bytes long.
	Socket string `yaml:"socket"`
	// TokenFile holds the admin bearer token; default .shoal/admin.token
	// next to lb.yaml, created when missing.
	TokenFile string `yaml:"token_file"`
}
