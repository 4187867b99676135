package lb

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441). A browser whose page came over
// HTTP/2 opens a WebSocket as a stream: an extended CONNECT with
// :protocol websocket, answered 200, then WebSocket frames in DATA both
// ways. The balancer forwards it to the target as the HTTP/1.1 Upgrade
// the target knows (a Sec-WebSocket-Key of its own, the client's
// version, subprotocols and extensions), checks the 101's
// Sec-WebSocket-Accept, answers the stream 200 with the target's other
// fields, and tunnels the stream to the connection (serveUpgrade): the
// same pick, stickiness, retries of the connect, metrics, drain and
// shutdown close frames as a WebSocket over HTTP/1.1. The frames are the
// same on both sides (RFC 8441 5), so the tunnel copies bytes.

// errWebSocketAccept is a target that switched protocols without the
// Sec-WebSocket-Accept of the key it was sent (not a WebSocket server).
var errWebSocketAccept = errors.New("target did not accept the WebSocket handshake")

// isWebSocketConnect reports whether r is an extended CONNECT for a
// WebSocket (RFC 8441 4). x/net's server puts :protocol in the header.
func isWebSocketConnect(r *http.Request) bool {
	if r.ProtoMajor != 2 || r.Method != http.MethodConnect {
		return false
	}
	p := r.Header[":protocol"]
	return len(p) == 1 && strings.EqualFold(p[0], "websocket")
}

// webSocketUpgradeHeader completes h, the header of an extended CONNECT
// being sent to a target as an HTTP/1.1 Upgrade (Connection and Upgrade
// are set by the caller), with a fresh Sec-WebSocket-Key and version 13
// when the client named none (RFC 6455 4.1).
func webSocketUpgradeHeader(h http.Header) {
	var key [16]byte
	rand.Read(key[:])
	h["Sec-Websocket-Key"] = []string{base64.StdEncoding.EncodeToString(key[:])}
	delete(h, "Sec-Websocket-Accept")
	if len(h["Sec-Websocket-Version"]) == 0 {
		h["Sec-Websocket-Version"] = []string{"13"}
	}
	h["Upgrade"] = []string{"websocket"}
}

// webSocketAccepted reports whether resp's Sec-WebSocket-Accept answers
// req's Sec-WebSocket-Key (RFC 6455 4.2.2).
func webSocketAccepted(req, resp http.Header) bool {
	key, acc := req["Sec-Websocket-Key"], resp["Sec-Websocket-Accept"]
	if len(key) != 1 || len(acc) != 1 {
		return false
	}
	sum := sha1.Sum([]byte(key[0] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return acc[0] == base64.StdEncoding.EncodeToString(sum[:])
}

// webSocketStream answers the extended CONNECT r with 200 and the
// target's 101 fields that mean something end to end (subprotocol,
// extensions, cookies), and returns the stream as the tunnel's client
// side.
func webSocketStream(w http.ResponseWriter, r *http.Request, ex *exchange, resp *http.Response, cookie *http.Cookie) net.Conn {
	rh := resp.Header
	removeHopHeaders(rh)
	delete(rh, "Sec-Websocket-Accept")
	wh := w.Header()
	for k, v := range rh {
		if k != "X-Request-Id" {
			wh[k] = v
		}
	}
	if cookie != nil {
		wh["Set-Cookie"] = append(wh["Set-Cookie"], cookie.String())
	}
	ex.status = http.StatusOK
	w.WriteHeader(http.StatusOK)
	s := &h2Stream{body: r.Body, w: w, rc: http.NewResponseController(w)}
	s.rc.Flush()
	return s
}

// h2Stream is an HTTP/2 stream as a net.Conn for a tunnel: reads from
// the request body, writes to the response (each write flushed). Write
// and Close may come from other goroutines than the handler's (a
// tunnel's close frame at drain); after Close nothing more is written,
// so the handler can return. Read deadlines are not set: x/net ends the
// body for good when one passes, and the tunnel's idle limit is kept by
// the target side's reads, which see both directions' activity.
type h2Stream struct {
	body io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController

	mu     sync.Mutex
	closed bool
}

func (s *h2Stream) Read(p []byte) (int, error) { return s.body.Read(p) }

func (s *h2Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(p)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// Close stops writes and ends the reads; the stream itself ends (END_STREAM)
// when the handler returns.
func (s *h2Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.body.Close()
}

func (s *h2Stream) SetDeadline(t time.Time) error      { return s.SetWriteDeadline(t) }
func (s *h2Stream) SetReadDeadline(time.Time) error    { return nil }
func (s *h2Stream) SetWriteDeadline(t time.Time) error { return s.rc.SetWriteDeadline(t) }
func (s *h2Stream) LocalAddr() net.Addr                { return h2StreamAddr{} }
func (s *h2Stream) RemoteAddr() net.Addr               { return h2StreamAddr{} }

// h2StreamAddr is the address of a stream, which has none of its own.
type h2StreamAddr struct{}

func (h2StreamAddr) Network() string { return "http2" }
func (h2StreamAddr) String() string  { return "stream" }
