package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/lb"
)

// LoadLB reads and validates the lb.yaml at path. On any problem it
// returns a nil *LBFile and a Problems error listing every problem with
// file:line:column. Files named in lb.yaml are resolved against the
// directory of path; the sticky secret files are read now, certificates
// and the token file later by their users.
func LoadLB(path string) (*LBFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lb config: %w", err)
	}
	return ParseLB(path, data)
}

// ParseLB validates data as the lb.yaml named file (used in messages and
// as the base for relative paths). See LoadLB.
func ParseLB(file string, data []byte) (*LBFile, error) {
	var doc lbDoc
	d := decode(file, data, &doc)
	if len(d.probs) > 0 {
		// Structural problems make later checks misleading (a list that
		// failed to decode looks empty): report those first and only.
		return nil, d.sorted()
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		dir = filepath.Dir(file)
	}
	v := lbValidator{d: d, dir: dir}
	out := v.build(&doc)
	if len(d.probs) > 0 {
		return nil, d.sorted()
	}
	out.Warnings = d.warns
	return out, nil
}

// OpenAccessLog opens f.AccessLog for appending. It returns a nil writer
// when the access log is off. Closing the returned closer is a no-op for
// stdout and stderr. A file is an *lb.LogFile, which the caller reopens on
// reload (log rotation).
func (f *LBFile) OpenAccessLog() (io.Writer, io.Closer, error) {
	switch f.AccessLog {
	case "":
		return nil, io.NopCloser(nil), nil
	case "stdout":
		return os.Stdout, io.NopCloser(nil), nil
	case "stderr":
		return os.Stderr, io.NopCloser(nil), nil
	}
	lf, err := lb.OpenLogFile(f.AccessLog)
	if err != nil {
		return nil, nil, err
	}
	return lf, lf, nil
}

type lbValidator struct {
	d   *document
	dir string
}

func (v *lbValidator) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

func (v *lbValidator) build(doc *lbDoc) *LBFile {
	d := v.d
	out := &LBFile{}
	cfg := &out.Balancer
	follows := doc.Server != nil
	if follows {
		out.Server = v.server(doc)
	}
	if doc.VIP != nil {
		data := filepath.Join(v.dir, ".shoal")
		if out.Server != nil {
			data = out.Server.DataDir
		}
		out.VIP = v.vip(doc.VIP, filepath.Join(data, "keepalived"))
	}

	if len(doc.Pools) == 0 && !follows {
		d.errorf("pools", "at least one pool is required")
	}
	pools := map[string]bool{}
	for i, p := range doc.Pools {
		path := fmt.Sprintf("pools[%d]", i)
		if v.name(path+".name", p.Name, "pool", pools) {
			cfg.Pools = append(cfg.Pools, v.pool(path, p))
		}
	}

	if len(doc.Routes) == 0 && !follows {
		d.errorf("routes", "at least one route is required")
	}
	routes := map[string]bool{}
	type hostPrefix struct{ host, prefix string }
	matches := map[hostPrefix]string{}
	for i, r := range doc.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		v.name(path+".name", r.Name, "route", routes)
		v.host(path+".host", r.Host)
		prefix := r.PathPrefix
		if prefix == "" {
			prefix = "/"
		} else if !strings.HasPrefix(prefix, "/") {
			d.errorf(path+".path_prefix", "must start with /, got %q", prefix)
		}
		switch {
		case r.Pool == "":
			d.errorf(path+".pool", "is required")
		case !pools[r.Pool]:
			d.errorf(path+".pool", "unknown pool %q", r.Pool)
		}
		k := hostPrefix{strings.ToLower(r.Host), prefix}
		if other, ok := matches[k]; ok {
			d.errorf(path, "matches the same host and path prefix as route %q", other)
		} else {
			matches[k] = r.Name
		}
		for j, lp := range r.LongLivedPaths {
			if !strings.HasPrefix(lp, "/") {
				d.errorf(fmt.Sprintf("%s.long_lived_paths[%d]", path, j), "must start with /, got %q", lp)
			}
		}
		r.Compression.check(path+".compression", d.errorf)
		r.Cache.check(path+".cache", d.errorf)
		cfg.Routes = append(cfg.Routes, lb.Route{Name: r.Name, Host: strings.ToLower(r.Host), PathPrefix: prefix, Pool: r.Pool,
			LongLived: r.LongLived, LongLivedPaths: append([]string(nil), r.LongLivedPaths...), Compression: r.Compression.LB(), Cache: r.Cache.LB()})
	}

	if len(doc.Listeners) == 0 {
		d.errorf("listeners", "at least one listener is required")
	}
	listeners := map[string]bool{}
	for i, l := range doc.Listeners {
		path := fmt.Sprintf("listeners[%d]", i)
		v.name(path+".name", l.Name, "listener", listeners)
		v.hostPort(path+".listen", l.Addr, true)
		ln := lb.Listener{Name: l.Name, Addr: l.Addr, Routes: l.Routes, Managed: l.ACME}
		if l.ACME && !follows {
			d.errorf(path+".acme", "needs a server section: the certificates come from the followed shoal server's balancer.acme (a standalone shoal lb has no ACME client)")
		}
		for j, c := range l.TLS {
			cp := fmt.Sprintf("%s.tls[%d]", path, j)
			if c.Cert == "" {
				d.errorf(cp+".cert", "is required")
			}
			if c.Key == "" {
				d.errorf(cp+".key", "is required")
			}
			ln.TLS = append(ln.TLS, lb.Certificate{CertFile: v.abs(c.Cert), KeyFile: v.abs(c.Key)})
		}
		for j, r := range l.Routes {
			if follows {
				d.errorf(fmt.Sprintf("%s.routes[%d]", path, j), "a node that follows a server (server.url) serves the server's routes on every listener")
				continue
			}
			if !routes[r] {
				d.errorf(fmt.Sprintf("%s.routes[%d]", path, j), "unknown route %q", r)
			}
		}
		cfg.Listeners = append(cfg.Listeners, ln)
	}

	cfg.Limits = v.limits(doc.Limits)
	// Unset, max_uri_bytes and max_request_line default to at most
	// max_header_bytes; set, they must fit in it.
	maxHeader, maxURI := cfg.Limits.MaxHeaderBytes, cfg.Limits.MaxURIBytes
	if maxHeader == 0 {
		maxHeader = lb.DefaultMaxHeaderBytes
	}
	if maxURI > maxHeader {
		d.errorf("limits.max_uri_bytes", "%d is more than max_header_bytes (%d)", maxURI, maxHeader)
	}
	if maxHeader < lb.MinMaxHeaderBytes {
		d.errorf("limits.max_header_bytes", "%d is less than the minimum %d (1KiB)", maxHeader, lb.MinMaxHeaderBytes)
	}
	if line := cfg.Limits.MaxRequestLine; line > maxHeader {
		d.errorf("limits.max_request_line", "%d is more than max_header_bytes (%d)", line, maxHeader)
	}
	for i, s := range doc.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			d.errorf(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err)
			continue
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p)
	}
	if b := doc.RetryBudget; b != nil {
		if *b < 0 || *b > 1 {
			d.errorf("retry_budget", "must be between 0 and 1, got %v", *b)
		}
		cfg.RetryBudget = *b
	}
	if m := doc.MinRetries; m != nil {
		if *m < 0 {
			d.errorf("min_retries", "must not be negative, got %d", *m)
		}
		cfg.MinRetries = *m
	}
	switch a := doc.AccessLog; a {
	case "", "off":
	case "stdout", "stderr":
		out.AccessLog = a
	default:
		out.AccessLog = v.abs(a)
	}

	// No admin address: no TCP listener, the API is on a Unix socket in
	// the data directory (a second balancer, or anything on 9090, cannot
	// make this one fail to start).
	out.Admin.Addr = doc.Admin.Addr
	switch {
	case out.Admin.Addr != "" && doc.Admin.Socket != "":
		d.errorf("admin.socket", "set either admin.listen (TCP) or admin.socket (Unix socket), not both")
	case out.Admin.Addr != "":
		v.hostPort("admin.listen", doc.Admin.Addr, true)
	default:
		out.Admin.Socket = v.abs(doc.Admin.Socket)
		if out.Admin.Socket == "" {
			out.Admin.Socket = filepath.Join(v.dir, ".shoal", "admin.sock")
		}
		if n := len(out.Admin.Socket); n > MaxSocketPath {
			path := "admin.socket"
			if doc.Admin.Socket == "" {
				path = "admin"
			}
			d.errorf(path, "the admin socket path %s is %d bytes, more than the %d a Unix socket allows: set admin.socket to a shorter path, or admin.listen", out.Admin.Socket, n, MaxSocketPath)
		}
	}
	out.Admin.TokenFile = v.abs(doc.Admin.TokenFile)
	if out.Admin.TokenFile == "" {
		out.Admin.TokenFile = filepath.Join(v.dir, ".shoal", "admin.token")
	}
	return out
}

// server checks the server section of a node that follows a server: no
// routes or pools of its own, the fleet URL, the name and the data dir.
func (v *lbValidator) server(doc *lbDoc) *LBServer {
	d, sd := v.d, doc.Server
	if len(doc.Routes) > 0 {
		d.errorf("routes", "must not be set with server: a node that follows a server gets its routes from it")
	}
	if len(doc.Pools) > 0 {
		d.errorf("pools", "must not be set with server: a node that follows a server gets its pools and targets from it")
	}
	out := &LBServer{JoinTokenFile: v.abs(sd.JoinTokenFile), Name: sd.Name, DataDir: v.abs(sd.DataDir)}
	out.URLs = checkServerURLs(d, "server.url", sd.URL, "https://10.0.0.1:7443", "the server's fleet listener (its fleet.url)")
	if out.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			d.errorf("server.name", "is not set and the host name is unknown: %v", err)
		}
		out.Name = strings.ToLower(h)
		if !ValidNodeName(out.Name) {
			d.errorf("server.name", "is not set and the host name %q is not a valid name (lowercase letters, digits, '.' and '-'; up to 63); set it", h)
		}
	} else if !ValidNodeName(out.Name) {
		d.errorf("server.name", "%q is not a valid name: lowercase letters, digits, '.' and '-', 1 to 63, starting and ending with a letter or digit", out.Name)
	}
	if out.DataDir == "" {
		out.DataDir = filepath.Join(v.dir, ".shoal")
	}
	return out
}

// vipBadChars are the characters refused in an interface name and in
// the keepalived path: they are written into keepalived.conf unquoted or
// in double quotes, so no space, quote, brace or '#'.
const vipBadChars = " \t\n\"'{}#\\"

// vip checks the vip section; dir is where keepalived's files go.
func (v *lbValidator) vip(vd *vipDoc, dir string) *LBVIP {
	d := v.d
	out := &LBVIP{Interface: vd.Interface, Priority: 100, RouterID: 51, AdvertInterval: 250 * time.Millisecond,
		Keepalived: vd.Keepalived, Dir: dir}
	if out.Keepalived == "" {
		out.Keepalived = "keepalived"
	}
	if strings.ContainsAny(out.Keepalived, vipBadChars) {
		d.errorf("vip.keepalived", "%q: a path without spaces, quotes, braces or '#'", vd.Keepalived)
	}
	switch {
	case vd.Address == "":
		d.errorf("vip.address", "is required: the floating address with its prefix length, such as 10.0.0.100/24")
	default:
		// Not parsePrefix: that masks the host part away.
		p, err := netip.ParsePrefix(vd.Address)
		if a, aerr := netip.ParseAddr(vd.Address); aerr == nil {
			p, err = netip.PrefixFrom(a, a.BitLen()), nil
		}
		if err != nil {
			d.errorf("vip.address", "%q is not an address with a prefix length, such as 10.0.0.100/24", vd.Address)
		} else if !p.Addr().IsGlobalUnicast() && !p.Addr().IsPrivate() {
			d.errorf("vip.address", "%s is not a unicast address a client can reach", p.Addr())
		} else {
			out.Address = p
		}
	}
	switch {
	case vd.Interface == "":
		d.errorf("vip.interface", "is required: the network interface that carries the address, such as eth0")
	case len(vd.Interface) > 15 || strings.ContainsAny(vd.Interface, vipBadChars+"/:"):
		d.errorf("vip.interface", "%q is not an interface name (at most 15 characters, no spaces, '/' or ':')", vd.Interface)
	}
	if len(vd.Peers) == 0 {
		d.errorf("vip.peers", "at least one peer is required: the addresses of the other balancer nodes that share the address")
	}
	seen := map[netip.Addr]bool{}
	for i, s := range vd.Peers {
		path := fmt.Sprintf("vip.peers[%d]", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			d.errorf(path, "%q is not an IP address", s)
		case seen[a]:
			d.errorf(path, "%s is listed twice", a)
		case out.Address.IsValid() && a == out.Address.Addr():
			d.errorf(path, "%s is the floating address itself; list the other nodes' own addresses", a)
		case out.Address.IsValid() && a.Is4() != out.Address.Addr().Is4():
			d.errorf(path, "%s is not of the floating address's family", a)
		default:
			seen[a] = true
			out.Peers = append(out.Peers, a)
		}
	}
	if vd.Source != "" {
		a, err := netip.ParseAddr(vd.Source)
		switch {
		case err != nil:
			d.errorf("vip.source", "%q is not an IP address", vd.Source)
		case seen[a] || (out.Address.IsValid() && a == out.Address.Addr()):
			d.errorf("vip.source", "%s is a peer's or the floating address; it must be this node's own address", a)
		default:
			out.Source = a
		}
	}
	if p := vd.Priority; p != nil {
		if *p < 1 || *p > 254 {
			d.errorf("vip.priority", "must be 1 to 254, got %d", *p)
		}
		out.Priority = *p
	}
	if r := vd.RouterID; r != nil {
		if *r < 1 || *r > 255 {
			d.errorf("vip.router_id", "must be 1 to 255, got %d", *r)
		}
		out.RouterID = *r
	}
	if a := time.Duration(vd.AdvertInterval); a != 0 {
		if a < 10*time.Millisecond || a > 4095*10*time.Millisecond || a%(10*time.Millisecond) != 0 {
			d.errorf("vip.advert_interval", "must be a multiple of 10ms from 10ms to 40.95s (VRRP version 3 counts centiseconds), got %s", a)
		}
		out.AdvertInterval = a
	}
	if vd.ReservedIP != nil {
		out.ReservedIP = v.reservedIP(vd.ReservedIP)
	}
	return out
}

// reservedIP checks vip.reserved_ip.
func (v *lbValidator) reservedIP(rd *reservedIPDoc) *LBReservedIP {
	d := v.d
	out := &LBReservedIP{Provider: rd.Provider, TokenFile: v.abs(rd.TokenFile), APIURL: rd.APIURL, MachineID: rd.DropletID}
	if rd.Provider != "digitalocean" {
		d.errorf("vip.reserved_ip.provider", "%q: want digitalocean", rd.Provider)
	}
	switch a, err := netip.ParseAddr(rd.Address); {
	case rd.Address == "":
		d.errorf("vip.reserved_ip.address", "is required: the provider's reserved IP, such as 203.0.113.7")
	case err != nil || !a.Is4():
		d.errorf("vip.reserved_ip.address", "%q is not an IPv4 address", rd.Address)
	default:
		out.Address = a
	}
	if rd.APIURL != "" {
		if u, err := url.Parse(rd.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			d.errorf("vip.reserved_ip.api_url", "%q: want an http or https URL", rd.APIURL)
		}
	}
	if id := rd.DropletID; id != "" {
		if n, err := strconv.Atoi(id); err != nil || n <= 0 {
			d.errorf("vip.reserved_ip.droplet_id", "%q is not a droplet id (a positive number)", id)
		}
	}
	return out
}

// name checks a required unique name and records it in seen. It reports
// whether the name is new and valid.
func (v *lbValidator) name(path, name, what string, seen map[string]bool) bool {
	switch {
	case name == "":
		v.d.errorf(path, "a %s name is required", what)
		return false
	case seen[name]:
		v.d.errorf(path, "duplicate %s name %q", what, name)
		return false
	case strings.ContainsAny(name, "/ \t\n"):
		v.d.errorf(path, "%s name %q must not contain spaces or /", what, name)
	}
	seen[name] = true
	return true
}

// hostPort checks a host:port; with emptyHost, ":80" is allowed.
func (v *lbValidator) hostPort(path, addr string, emptyHost bool) bool {
	if err := checkHostPort(addr, emptyHost); err != nil {
		v.d.errorf(path, "%v", err)
		return false
	}
	return true
}

func checkHostPort(addr string, emptyHost bool) error {
	if addr == "" {
		return errors.New("an address host:port is required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port in %q", addr)
	}
	if host == "" && !emptyHost {
		return fmt.Errorf("address %q has no host", addr)
	}
	if strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("invalid host in %q", addr)
	}
	return nil
}

func (v *lbValidator) host(path, h string) {
	if h == "" {
		return
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") || strings.ContainsAny(name, ":/ \t") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || name == "" {
		v.d.errorf(path, "invalid host %q: want a name such as app.example.com or *.example.com", h)
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: want an IP or a CIDR such as 10.0.0.0/8", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// duration checks that a duration field is not negative.
func (v *lbValidator) duration(path string, d Duration) time.Duration {
	if d < 0 {
		v.d.errorf(path, "must not be negative, got %v", d.D())
		return 0
	}
	return d.D()
}

func (v *lbValidator) nonNegative(path string, n int) int {
	if n < 0 {
		v.d.errorf(path, "must not be negative, got %d", n)
		return 0
	}
	return n
}

func (v *lbValidator) limits(l limitsDoc) lb.Limits {
	return lb.Limits{
		HeaderTimeout:      v.duration("limits.header_timeout", l.HeaderTimeout),
		ClientIdle:         v.duration("limits.client_idle", l.ClientIdle),
		UpstreamIdle:       v.duration("limits.upstream_idle", l.UpstreamIdle),
		MaxHeaderBytes:     v.sizeInt("limits.max_header_bytes", l.MaxHeaderBytes),
		MaxURIBytes:        v.sizeInt("limits.max_uri_bytes", l.MaxURIBytes),
		MaxRequestLine:     v.sizeInt("limits.max_request_line", l.MaxRequestLine),
		MaxBodyBytes:       int64(l.MaxBodyBytes),
		MaxConns:           v.nonNegative("limits.max_conns", l.MaxConns),
		MaxIdlePerHost:     v.nonNegative("limits.max_idle_per_host", l.MaxIdlePerHost),
		WebSocketIdle:      v.duration("limits.websocket_idle", l.WebSocketIdle),
		ShutdownTimeout:    v.duration("limits.shutdown_timeout", l.ShutdownTimeout),
		DisableFastPath:    l.FastPath != nil && !*l.FastPath,
		DisableTLSFastPath: l.TLSFastPath != nil && !*l.TLSFastPath,
		DisableH2FastPath:  l.H2FastPath != nil && !*l.H2FastPath,
		DisableTLSRecords:  l.TLSRecords != nil && !*l.TLSRecords,
		Loops:              v.nonNegative("limits.loops", l.Loops),
	}
}

func (v *lbValidator) sizeInt(path string, s Size) int {
	if s > 1<<30 {
		v.d.errorf(path, "must be at most 1GiB")
		return 0
	}
	return int(s)
}

// validCookieName reports whether s is an RFC 6265 token.
func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	c := http.Cookie{Name: s, Value: "x"}
	return c.Valid() == nil
}
