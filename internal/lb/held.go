package lb

import (
	"strings"

	"github.com/shoal-dev/shoal/internal/pool"
)

// Held-open exchanges. A long poll, a stream or a server-sent event
// source is kept open by the server on purpose, for seconds or minutes;
// its duration is a connection's life, not a request's latency. Counted
// with ordinary requests it drives the percentiles that latency autoscaling
// policies and the dashboard read (issue 10, section 6: a Meteor app with
// SockJS fallback clients reported a p95 of tens of seconds and was scaled
// to its maximum). Such an exchange is counted apart instead: an open-held
// gauge and a held-duration histogram, and RequestRecord.Held.

// sockJSHeldTransports are the SockJS transports whose requests the server
// holds open: streaming (xhr_streaming, eventsource, htmlfile) until a
// size limit or the session ends, polling (xhr, jsonp) until it has a
// message or the poll times out (25 s in sockjs-node). The *_send
// transports and websocket are not held (a WebSocket is a tunnel, counted
// apart already).
var sockJSHeldTransports = [...]string{"xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"}

// heldOpen reports whether an exchange is held open on purpose by the
// server, from what the balancer knows of it: its route (nil when none
// matched), the request method, path and raw query, and the response's
// Content-Type ("" when no response head has arrived yet). Both the event
// loops and the net/http path call it, once when the request is routed
// (contentType "") and once more with the response head, so both classify
// alike. The classes are:
//
//   - a response of type text/event-stream (server-sent events);
//   - a route marked Route.LongLived, or a path under one of its
//     Route.LongLivedPaths;
//   - a SockJS session URL under the pool's sticky SockJS prefixes whose
//     transport streams or polls (sockJSHeldTransports);
//   - an Engine.IO (socket.io) polling GET: a query with EIO and
//     transport=polling (the POSTs that carry the client's messages are
//     answered at once and stay ordinary requests).
//
// It allocates nothing and is safe on any input.
func heldOpen(rt *route, method, path, rawQuery, contentType string) bool {
	if contentType != "" && isEventStream(contentType) {
		return true
	}
	if rt == nil {
		return false
	}
	if rt.longLived {
		return true
	}
	for _, pre := range rt.longPaths {
		if hasPathPrefix(path, pre) {
			return true
		}
	}
	if rt.pool != nil {
		if pre := rt.pool.cfg.Sticky.SockJSPrefixes; len(pre) > 0 {
			if _, tr, ok := pool.SockJSURL(path, pre); ok {
				for _, h := range sockJSHeldTransports {
					if tr == h {
						return true
					}
				}
			}
		}
	}
	return method == "GET" && rawQuery != "" && engineIOPolling(rawQuery)
}

// isEventStream reports whether a Content-Type value names the media type
// text/event-stream (any case, any parameters).
func isEventStream(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// engineIOPolling reports whether a raw query is an Engine.IO request on
// the polling transport: it has an EIO parameter and transport=polling.
func engineIOPolling(q string) bool {
	eio, polling := false, false
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "EIO":
			eio = true
		case "transport":
			polling = v == "polling"
		}
	}
	return eio && polling
}

// hold marks ex as held open, once, and counts it among its pool's open
// held exchanges until it is recorded. A WebSocket tunnel is never marked:
// it is counted apart already.
func (ex *exchange) hold() {
	if ex.held || ex.websocket || ex.route == nil || ex.route.pool == nil {
		return
	}
	ex.held = true
	ex.heldPool = ex.route.pool.m
	ex.heldPool.held.Inc()
	ex.heldPool.lat.held.Add(1)
}
