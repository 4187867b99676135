package lb

import (
	"errors"
	"net/http"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/pool"
)

// The rules both request paths apply, each written once: the event-loop
// path (evclient.go, on the parsers of internal/h1) and the net/http path
// (proxy.go, websocket.go) call these functions, so the two cannot drift
// apart.
// Each has a table test in policy_test.go; the behaviour each rule
// produces end to end is checked on both paths by paths_table_test.go.

// idempotent reports whether method is idempotent (RFC 9110 9.2.2): the
// same request sent twice has the effect of sending it once.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryable reports whether an attempt that failed with err may be sent
// again to another target:
//
//   - a drain deadline ends the request: never;
//   - a connect failure never reached the application: yes, when the body
//     can be sent again (replayable: none, untouched, or buffered whole);
//   - any other failure before the response headers (a reset, a timeout,
//     a bad response) may have reached the application: only an
//     idempotent method, and only without a body, with or without one
//     buffered (a non-idempotent request is never sent twice, RFC 9110
//     9.2.2; a request body is the application's input and is not
//     resent after it may have been read).
func retryable(err error, method string, hasBody, replayable bool) bool {
	if errors.Is(err, pool.ErrDrainDeadline) || errors.Is(err, errQueueTimeout) {
		return false
	}
	var de *dialError
	if errors.As(err, &de) {
		return replayable
	}
	return !hasBody && idempotent(method)
}

// mayRetry is the whole retry decision after try (from 0) failed with
// err: tries left, the request retryable, and a token from the retry
// budget, which it takes (so call it once per failed try, last).
func mayRetry(err error, method string, hasBody, replayable bool, try, maxTries int, budget *retryBudget) bool {
	return try+1 < maxTries && retryable(err, method, hasBody, replayable) && budget.withdraw()
}

// errorAnswer is the balancer's own answer to a request it cannot
// forward: a short text body under status.
type errorAnswer struct {
	status int
	// msg is the body without its final newline; the body is msg+"\n",
	// Content-Length len(msg)+1.
	msg string
	// close: the connection closes after this answer (Connection: close).
	close bool
}

// Header values of every error answer.
const (
	errorContentType = "text/plain; charset=utf-8"
	errorNoSniff     = "nosniff"
)

// answerFor returns the answer to a request that failed with err.
// closeAfter is the exchange's own reason to close the connection (a
// tainted or upgraded connection, a client that asked to close).
//
// The connection also closes after 400, 413 and 431: the request's
// framing or size is in doubt (a body not read, a head not read whole),
// so the next bytes on the connection cannot be trusted to start a
// request. Both paths close in these cases (the fast path used to keep
// the connection after a 413 or a 431; it never produces them today, as
// it hands such requests over, but the rule is the same).
func answerFor(err error, closeAfter bool) errorAnswer {
	a := errorAnswer{status: statusOf(err), close: closeAfter}
	switch a.status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge:
		a.close = true
	}
	a.msg = http.StatusText(a.status)
	if a.status == http.StatusNotFound {
		a.msg = errNoRoute.Error()
	}
	return a
}

// hopHeaders are removed from requests and responses in both directions
// (RFC 9110 7.6.1), together with every header named in Connection.
// Proxy-Authorization and Proxy-Authenticate are removed too: Shoal does
// not authenticate proxies, and credentials meant for a proxy must not
// reach an application (Go's httputil.ReverseProxy does the same; HAProxy
// passes them). The fast path's field classes derive from this list
// (fieldKinds).
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// clientHeaders are the headers that claim facts about the client. From an
// untrusted client they are dropped and set by the balancer alone, to the
// values of untrustedForwarded, in this order.
var clientHeaders = [...]string{"X-Forwarded-For", "X-Real-Ip", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"}

// untrustedForwarded returns the values of clientHeaders, in order, for a
// request from an untrusted client: ip is the client's address as text,
// proto "http" or "https", host the request's Host and fwd its
// forwardedElement.
func untrustedForwarded(ip, proto, host, fwd string) [len(clientHeaders)]string {
	return [...]string{ip, ip, proto, host, fwd}
}

// fieldKinds classifies the lower-cased request field names the fast path
// treats specially (every other name is h1.FieldOther); h1.ParseRequest
// and h1.ParseResponse read it. The hop-by-hop and client-fact names come
// from hopHeaders and clientHeaders; of the hop-by-hop ones, Connection
// and Upgrade are read before being dropped and Transfer-Encoding hands
// the request to the net/http path.
var fieldKinds = func() h1.Kinds {
	m := h1.Kinds{
		"host":           h1.FieldHost,
		"content-length": h1.FieldContentLength,
		"x-request-id":   h1.FieldRequestID,
		"cookie":         h1.FieldCookie,
		// Read for compression (compressFor) and forwarded as it is.
		"accept-encoding": h1.FieldAcceptEncoding,
		"expect":          h1.FieldRefuse,
		"http2-settings":  h1.FieldRefuse,
	}
	for _, k := range clientHeaders {
		m[h1.Lower(k)] = h1.FieldClient
	}
	for _, k := range hopHeaders {
		m[h1.Lower(k)] = h1.FieldHop
	}
	m["connection"] = h1.FieldConnection
	m["upgrade"] = h1.FieldUpgrade
	m["transfer-encoding"] = h1.FieldRefuse
	return m
}()
