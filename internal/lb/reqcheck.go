package lb

import (
	"net/http"
)

// The request checks both HTTP/1.1 paths and HTTP/2 share: the fast path
// calls them on the bytes it parsed, the net/http path (HTTP/1.1 behind
// the guard, and HTTP/2) on the *http.Request, so that a request is
// refused the same way whichever path carries it. The method check is
// h1.ValidMethod (the fast path's parser calls it, proxy.go for the
// net/http path).

// requestLineLen is the length of the request line of r, without its
// CRLF: method SP request-target SP version. For HTTP/1.1 that is exactly
// the line the client sent (net/http splits it at the first two spaces
// and keeps the rest as Proto); for HTTP/2 it is the equivalent line
// built from :method and :path.
func requestLineLen(r *http.Request) int {
	return len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto)
}

// h2FieldOverhead and h2TypicalFields are the padding net/http's HTTP/2
// server adds to http.Server.MaxHeaderBytes to get its header list size
// limit (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 6.5.2: names + values +
// 32 bytes per field). serverMaxHeaderBytes undoes it, so that HTTP/2
// header lists are cut at exactly Limits.MaxHeaderBytes (a larger list
// gets 431 from net/http). TestHeaderLimitExactHTTP2 holds this to the Go
// version in use.
const (
	h2FieldOverhead = 32
	h2TypicalFields = 10
)

// serverMaxHeaderBytes is http.Server.MaxHeaderBytes for a listener whose
// head limit is maxHead (at least MinMaxHeaderBytes). For HTTP/1.1 it is
// only a backstop: net/http reads up to 4 KiB more than it, and the guard
// measures the head exactly (guardConn.oversize).
func serverMaxHeaderBytes(maxHead int) int {
	return maxHead - h2FieldOverhead*h2TypicalFields
}

// MinMaxHeaderBytes is the smallest Limits.MaxHeaderBytes accepted.
const MinMaxHeaderBytes = 1 << 10
