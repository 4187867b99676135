// Package agentclient is the Go client of the host agent's API (package
// agent), used by the server to drive a remote host: start, stop and list
// instances, follow their exits, stream their logs, read their resource use
// and the host's. It speaks the wire types of package api over HTTPS with the
// caller's TLS configuration (mutual TLS: the caller's certificate is the
// server's); it imports nothing else of Shoal's, so no daemon is linked into
// it.
//
// Every error names the agent's address. An answer with an error status is a
// *StatusError, which wraps ErrNotFound, ErrStaleTerm, ErrConflict, ErrUnsupported or
// ErrExitsGone where the status means one of them.
package agentclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Client calls one agent. It is safe for concurrent use; the zero value is
// not usable, call New.
type Client struct {
	base string
	addr string
	// HTTP sends the requests. New sets one without an overall timeout:
	// calls are bounded by their ctx (a stop waits for the instance's stop
	// timeout, an exits poll for the agent's poll wait). Its transport
	// keeps the heartbeat's connection apart from the other calls' (see
	// Host); its CloseIdleConnections closes both.
	HTTP *http.Client
}

// maxIdlePerAgent is how many idle connections to one agent are kept for
// the next calls. net/http keeps 2: a server starting ten instances on a
// host at once (a bring-up, a lost host's replacements) then closed eight
// of the connections it had just opened, each a mutual-TLS handshake on
// both sides, and opened them again for the next calls.
const maxIdlePerAgent = 16

// New returns a client of the agent at baseURL ("https://10.0.0.5:7443")
// that connects with tlsConfig (its certificate and the CA that signed the
// agent's). tlsConfig is used as given; nil means Go's defaults, which offer
// no client certificate, so the agent refuses the connection.
func New(baseURL string, tlsConfig *tls.Config) *Client {
	base := strings.TrimRight(baseURL, "/")
	addr := base
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		addr = u.Host
	}
	calls := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     30 * time.Second,
		MaxIdleConnsPerHost: maxIdlePerAgent,
	}
	// The heartbeats are sent one at a time: one kept connection serves
	// them all, however long the server waits between two. No cap on
	// connections, so a heartbeat never queues for one.
	beats := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 1,
	}
	return &Client{base: base, addr: addr, HTTP: &http.Client{Transport: &transport{calls: calls, beats: beats}}}
}

// transport sends a Client's requests: a heartbeat (a request whose
// context carries beatKey) over the heartbeat's own connections, every
// other call over the pool of the calls. A start that waits on an
// artifact fetch holds its connection for as long; when every kept
// connection was busy so, the heartbeat took a new one, a mutual-TLS
// handshake on a loaded host, raced for by the next starts (issue 14).
type transport struct {
	calls, beats *http.Transport
}

// beatKey marks a heartbeat's request context.
type beatKey struct{}

// RoundTrip sends r over the heartbeat's or the calls' connections.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Context().Value(beatKey{}) != nil {
		return t.beats.RoundTrip(r)
	}
	return t.calls.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of both pools
// (http.Client.CloseIdleConnections calls it).
func (t *transport) CloseIdleConnections() {
	t.calls.CloseIdleConnections()
	t.beats.CloseIdleConnections()
}

// SetDialContext makes c open its connections (the heartbeat's and the
// calls') with dial, such as a dialer inside a test's network namespace.
// Call it before the first request.
func (c *Client) SetDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t := c.HTTP.Transport.(*transport)
	t.calls.DialContext = dial
	t.beats.DialContext = dial
}

// Addr returns the agent's host:port, as errors name it.
func (c *Client) Addr() string { return c.addr }

// Sentinels wrapped by a *StatusError.
var (
	// ErrNotFound: the instance is not known to the agent (404).
	ErrNotFound = errors.New("unknown instance")
	// ErrStaleTerm: the agent has seen a newer leader's term (409 with
	// the agent's term in api.TermHeader).
	ErrStaleTerm = errors.New("stale term")
	// ErrConflict: the instance id runs another artifact or command (409).
	ErrConflict = errors.New("conflict")
	// ErrExitsGone: the exits asked for are no longer held, or belong to
	// an earlier run of the agent (410). List the instances and follow
	// from the list's cursor.
	ErrExitsGone = errors.New("exits no longer held")
	// ErrUnsupported: the agent cannot run this kind of instance (501): a
	// container instance on a host with no Docker engine. Another host
	// may.
	ErrUnsupported = errors.New("not supported by this host")
)

// StatusError is an answer of the agent with a non-2xx status.
type StatusError struct {
	Addr    string // the agent's host:port
	Op      string // what was asked ("start web-3")
	Status  int
	Message string // the agent's error text
	// Term is the agent's term on a refused stale term, else 0.
	Term uint64
}

// Error names the agent, the operation, the status and the agent's message.
func (e *StatusError) Error() string {
	return fmt.Sprintf("agent %s: %s: %d %s: %s", e.Addr, e.Op, e.Status, http.StatusText(e.Status), e.Message)
}

// Unwrap returns the sentinel the status means, or nil.
func (e *StatusError) Unwrap() error {
	switch {
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusConflict && e.Term > 0:
		return ErrStaleTerm
	case e.Status == http.StatusConflict:
		return ErrConflict
	case e.Status == http.StatusGone:
		return ErrExitsGone
	case e.Status == http.StatusNotImplemented:
		return ErrUnsupported
	}
	return nil
}

// maxAnswer bounds a JSON answer the client reads (an exits page holds up to
// the agent's whole ring, each exit with a log tail).
const maxAnswer = 64 << 20

// Start asks the agent to run spec under the leader's term and returns the
// running instance, once its process runs. It is idempotent by spec.ID: a
// retry after a lost answer returns the instance started by the first try.
func (c *Client) Start(ctx context.Context, term uint64, spec api.LaunchSpec) (api.InstanceInfo, error) {
	var info api.InstanceInfo
	err := c.do(ctx, "start "+spec.ID, http.MethodPost, "/v1/instances", term, spec, &info)
	return info, err
}

// Stop asks the agent to stop the instance under the leader's term: its stop
// signal, then SIGKILL after its stop timeout. It returns once the instance
// has exited; an unknown instance is not an error. ctx ending does not cut
// the agent's grace period short.
func (c *Client) Stop(ctx context.Context, term uint64, id string) error {
	return c.do(ctx, "stop "+id, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), term, nil, nil)
}

// List returns the instances that run on the agent, with the cursor from
// which to follow their exits (FollowExits(list.Epoch, list.ExitSeq)).
func (c *Client) List(ctx context.Context) (api.InstanceList, error) {
	var l api.InstanceList
	err := c.do(ctx, "list instances", http.MethodGet, "/v1/instances", 0, nil, &l)
	return l, err
}

// Exits asks once for the exits of epoch after the sequence number after,
// waiting up to the agent's poll wait for one; the page may be empty. An
// empty epoch with after 0 asks from the start of the agent's current
// epoch. Most callers want FollowExits.
func (c *Client) Exits(ctx context.Context, epoch string, after uint64) (api.ExitsPage, error) {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if epoch != "" {
		q.Set("epoch", epoch)
	}
	var p api.ExitsPage
	err := c.do(ctx, "exits", http.MethodGet, "/v1/exits?"+q.Encode(), 0, nil, &p)
	return p, err
}

// Stats returns the resource use of a running instance.
func (c *Client) Stats(ctx context.Context, id string) (api.InstanceStats, error) {
	var s api.InstanceStats
	err := c.do(ctx, "stats "+id, http.MethodGet, "/v1/instances/"+url.PathEscape(id)+"/stats", 0, nil, &s)
	return s, err
}

// Host describes the agent's host. It is the server's heartbeat: it goes
// over a connection of its own, kept between calls, that no other call
// takes, so a host busy with long calls (starts waiting on an artifact
// fetch, stops waiting on a grace period, log follows) answers it without
// a new handshake.
func (c *Client) Host(ctx context.Context) (api.HostInfo, error) {
	var h api.HostInfo
	ctx = context.WithValue(ctx, beatKey{}, true)
	err := c.do(ctx, "host", http.MethodGet, "/v1/host", 0, nil, &h)
	return h, err
}

// Logs writes the last tail lines of the instance's output to w (every line
// the agent keeps when tail <= 0) and, with follow, the output that follows
// until the instance has ended or ctx ends (nil then). An unknown instance is
// an error wrapping ErrNotFound.
func (c *Client) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	op := "logs " + id
	q := url.Values{"tail": {strconv.Itoa(tail)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, op, http.MethodGet, "/v1/instances/"+url.PathEscape(id)+"/logs?"+q.Encode(), 0, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("agent %s: %s: %w", c.addr, op, err)
	}
	return nil
}

// do sends one request (with term when > 0, and in as its JSON body when
// non-nil) and decodes the answer into out when non-nil.
func (c *Client) do(ctx context.Context, op, method, path string, term uint64, in, out any) error {
	resp, err := c.send(ctx, op, method, path, term, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("agent %s: %s: decode answer: %w", c.addr, op, err)
	}
	return nil
}

// send sends one request and returns a 2xx answer, whose body the caller
// closes; any other status is a *StatusError.
func (c *Client) send(ctx context.Context, op, method, path string, term uint64, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %s: encode request: %w", c.addr, op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: %w", c.addr, op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if term > 0 {
		req.Header.Set(api.TermHeader, strconv.FormatUint(term, 10))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: %w", c.addr, op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Addr: c.addr, Op: op, Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	var eb api.ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		se.Message = eb.Error
	}
	if se.Message == "" {
		se.Message = http.StatusText(resp.StatusCode)
	}
	if resp.StatusCode == http.StatusConflict {
		se.Term, _ = strconv.ParseUint(resp.Header.Get(api.TermHeader), 10, 64)
	}
	return nil, se
}
