package lb

import (
	"fmt"
	"net/http"
	"strings"
)

// Protocol is how the balancer speaks to the targets of a pool. The zero
// value is HTTP/1.1.
type Protocol uint8

const (
	// ProtocolHTTP1 is HTTP/1.1 with keep-alive ("http1", the default).
	ProtocolHTTP1 Protocol = iota
	// ProtocolH2C is HTTP/2 over plain TCP with prior knowledge ("h2c",
	// RFC 9113 3.3), for targets that serve gRPC or HTTP/2 only: streams
	// share a connection per target, request and response trailers pass
	// through, and requests for the pool are served by the net/http path
	// (the fast path speaks HTTP/1.1 to its targets and hands them over).
	ProtocolH2C
	// ProtocolH2 is HTTP/2 over TLS ("h2"), for a pool with TLS settings
	// (PoolConfig.TLS): the balancer offers only "h2" in ALPN and refuses
	// a target that does not agree (the connection fails, is logged and
	// counted in shoal_lb_target_tls_failures_total{reason="alpn"}).
	// Otherwise as ProtocolH2C.
	ProtocolH2
)

var protocolNames = [...]string{ProtocolHTTP1: "http1", ProtocolH2C: "h2c", ProtocolH2: "h2"}

// http2 reports whether p speaks HTTP/2 to the targets (h2c or h2).
func (p Protocol) http2() bool { return p == ProtocolH2C || p == ProtocolH2 }

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("protocol(%d)", p)
}

// ParseProtocol reads a pool protocol by name; "" is ProtocolHTTP1.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "http1":
		return ProtocolHTTP1, nil
	case "h2c":
		return ProtocolH2C, nil
	case "h2":
		return ProtocolH2, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want http1, h2c, or h2 with tls)", s)
}

// newH2CTransport is newTransport's counterpart for ProtocolH2C: HTTP/2
// with prior knowledge on connections it dials like newTransport does,
// the same try timeout until response headers and the same idle limit.
func newH2CTransport(pc PoolConfig, lim Limits) *http.Transport {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	return &http.Transport{
		DialContext:            dialTarget(pc),
		Protocols:              &protos,
		MaxIdleConnsPerHost:    lim.MaxIdlePerHost,
		IdleConnTimeout:        lim.UpstreamIdle,
		ResponseHeaderTimeout:  max(pc.TryTimeout, 0),
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// keepTE puts "TE: trailers" back on a request to an HTTP/2 pool when the
// client sent it (removeHopHeaders drops TE): it is the one value HTTP/2
// allows (RFC 9113 8.2.2), and gRPC servers require it to tell a gRPC
// client from a proxy that would lose trailers.
func keepTE(te []string, h http.Header) {
	for _, v := range te {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "trailers") {
				h["Te"] = []string{"trailers"}
				return
			}
		}
	}
}

// isGRPC reports whether r is a gRPC call (an HTTP/2 request with a
// Content-Type of application/grpc or application/grpc+format), whose
// client reads a failure from grpc-status rather than the HTTP status.
func isGRPC(r *http.Request) bool {
	if r.ProtoMajor != 2 {
		return false
	}
	ct := r.Header["Content-Type"]
	if len(ct) != 1 {
		return false
	}
	rest, ok := strings.CutPrefix(ct[0], "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcCode maps an HTTP status of the balancer's own answers to the gRPC
// status code a gRPC client expects from a proxy (the HTTP to gRPC
// status mapping of grpc/doc/http-grpc-status-mapping.md; 413 and 431 as
// RESOURCE_EXHAUSTED, what gRPC itself reports for a message too large).
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// failGRPC writes the balancer's answer status/msg to a gRPC call as a
// trailers-only response (HTTP 200, the code in grpc-status, the text
// percent-encoded in grpc-message), which gRPC clients turn into a
// status error instead of a protocol error.
func failGRPC(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/grpc"}
	h["Grpc-Status"] = []string{fmt.Sprint(grpcCode(status))}
	h["Grpc-Message"] = []string{grpcMessage(msg)}
	w.WriteHeader(http.StatusOK)
}

// grpcMessage percent-encodes s as grpc-message wants: bytes outside
// printable ASCII, and '%', as %XX.
func grpcMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
