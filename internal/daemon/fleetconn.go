package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sys/unix"
)

// A node of the fleet (an agent, a balancer node) holds long calls to a
// server: a balancer node's long poll waits up to lbPollWait for a
// change, an artifact fetch streams for minutes. A server cut off by a
// partition that drops packets leaves such a connection open and silent,
// and without a bound the node would wait for its own request timeout
// (40 s for the long poll) before it tries the next server (issue 14).
// So every connection of a node to a server is a TCP connection that
// gives up on a peer that acknowledges nothing: after fleetIdle without
// traffic the kernel probes the peer (keep-alive, every fleetProbeEvery),
// and data or probes left unacknowledged for fleetUnacked abort the
// connection (TCP_USER_TIMEOUT, RFC 5482), which fails the call in
// progress. A server that is alive answers the probes from its kernel
// whether or not its handler has anything to say, so a long poll that is
// merely waiting is never cut. A connection to a silent server is not
// made either: a dial gives up after fleetDialTimeout. The bound: a call
// fails within fleetIdle + fleetUnacked (7 s) of the server's last
// packet, plus one dial (Go's transport retries a GET whose reused
// connection failed on a new one): a node leaves a silent server within
// 12 s, well within the long poll's lbPollWait.
const (
	fleetIdle        = 2 * time.Second
	fleetProbeEvery  = time.Second
	fleetUnacked     = 5 * time.Second
	fleetDialTimeout = 5 * time.Second
)

// dialFunc is a DialContext function.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// fleetTransport is the HTTP transport of a node's calls to the servers:
// TLS with tc, connections dialled by dial (nil: a plain net.Dialer) and
// bounded as above.
func fleetTransport(tc *tls.Config, dial dialFunc) *http.Transport {
	if dial == nil {
		d := &net.Dialer{KeepAlive: -1} // set by fleetDial
		dial = d.DialContext
	}
	return &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         fleetDial(dial),
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
}

// fleetDial wraps dial so that each TCP connection it makes is made
// within fleetDialTimeout and has the fleet's keep-alive and
// unacknowledged-data bounds.
func fleetDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, fleetDialTimeout)
		defer cancel()
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tcp, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		if err := boundSilence(tcp); err != nil {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		return c, nil
	}
}

// boundSilence sets c's keep-alive probes and TCP_USER_TIMEOUT.
func boundSilence(c *net.TCPConn) error {
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: fleetIdle, Interval: fleetProbeEvery, Count: 3}); err != nil {
		return fmt.Errorf("set keep-alive: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(fleetUnacked.Milliseconds()))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
	}
	return nil
}
