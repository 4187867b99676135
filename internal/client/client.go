// Package client is the Go client of Shoal's admin API, used by the CLI
// and the tests. It speaks JSON over HTTP with the bearer token, and turns
// every non-2xx answer into an *APIError carrying the server's message,
// an address where nothing answers into an *UnreachableError, and an
// answer from another app's admin API into a *WrongAppError.
//
// Its wire types, the controller's, the balancer's and auto scaling's,
// answers and request bodies alike, are those of package api, the one
// vocabulary (a leaf), named here by aliases where the client's callers
// use them. Nothing is imported from the server packages, so the
// CLI does not link the daemons' internals to talk to them; package
// adminapi's tests decode its answers with this client and hold them to
// their bytes to keep the two in agreement.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
)

// Client calls one admin API. It is safe for concurrent use; the zero
// value is not usable, call New.
type Client struct {
	base  string
	token string
	// HTTP is the client used for requests. New sets one without an
	// overall timeout: callers bound calls with their ctx (a drain with
	// wait=true can legitimately take the drain timeout).
	HTTP *http.Client
	// App, when set, is the app this client means to talk to. An answer
	// from the admin API of another app (its AppHeader names another) is
	// a *WrongAppError, whatever its status: a 401 from another app's
	// shoal is not a wrong token. Empty accepts any app.
	//
	// It is also sent, in AppHeader, with every request: `shoal server`
	// serves many apps and chooses the app's controller by it.
	App string
	// Hint, when set, ends the message of an *UnreachableError: how to
	// start what should answer ("is `shoal up` running in /srv/app?").
	Hint string
}

// AppHeader is the response header in which the admin API of `shoal up`
// names its app, on every answer including 401s; it holds no secret.
// Requests carry it too (Client.App), for `shoal server`.
const AppHeader = "Shoal-App"

// WrongAppError is the answer of an admin API that belongs to another app
// than Client.App.
type WrongAppError struct {
	Addr string // host:port of the admin API
	Got  string // the app that answered
	Want string // Client.App
}

// Error names both apps and the likely cause.
func (e *WrongAppError) Error() string {
	return fmt.Sprintf("the admin API at %s belongs to app %s, not %s (is another shoal up running there?)", e.Addr, e.Got, e.Want)
}

// UnreachableError is a request that found nothing answering at the
// admin API's address (connection refused, no route, dial timeout).
type UnreachableError struct {
	URL  string // the admin API's base URL
	Hint string // Client.Hint
	Err  error  // the dial error
}

// Error says that nothing answers, why, and the hint.
func (e *UnreachableError) Error() string {
	msg := "nothing answers at " + e.URL
	var se syscall.Errno
	if errors.As(e.Err, &se) {
		msg += " (" + se.Error() + ")"
	} else {
		msg += " (" + e.Err.Error() + ")"
	}
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// New returns a client for the admin API at baseURL that authenticates
// with token. baseURL is "http://host:port" (such as
// "http://127.0.0.1:9090"), or "unix:" and the path of a Unix socket
// (such as "unix:/srv/lb/.shoal/admin.sock", the balancer's default when
// lb.yaml sets no admin address), which is dialed for every request.
func New(baseURL, token string) *Client {
	tr := &http.Transport{Proxy: nil, IdleConnTimeout: 30 * time.Second}
	if sock, ok := strings.CutPrefix(baseURL, "unix:"); ok {
		sock = strings.TrimPrefix(sock, "//") // unix:///path as well
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
		// The host is only a name for the socket in URLs and messages.
		baseURL = "http://unix-socket"
	}
	return &Client{
		base:  strings.TrimRight(baseURL, "/"),
		token: token,
		HTTP:  &http.Client{Transport: tr},
	}
}

// Options are a client's settings beyond the URL and the token.
type Options struct {
	// CAPin is the pin of the fleet CA of `shoal server` ("sha256:<64
	// hex>", which it prints when it starts and join tokens carry): an
	// https admin URL must then present a server certificate from that CA
	// (the check a joining agent makes, pki.PinTransport). Empty: an
	// https URL is checked against the system's roots. It does not apply
	// to http and unix: URLs.
	CAPin string
}

// NewWithOptions is New with o; a malformed CAPin is an error.
func NewWithOptions(baseURL, token string, o Options) (*Client, error) {
	c := New(baseURL, token)
	if o.CAPin != "" {
		if err := pki.PinTransport(c.HTTP.Transport.(*http.Transport), o.CAPin); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// APIError is an answer with a non-2xx status. Message is the server's
// error text (the "error" field of the JSON body) or the start of the body
// when it was not JSON.
type APIError struct {
	Status  int
	Message string
}

// Error reports the status and the server's message.
func (e *APIError) Error() string {
	return fmt.Sprintf("admin api: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsStatus reports whether err is an *APIError with the given status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// maxResponse bounds a response body the client reads.
const maxResponse = 16 << 20

// do sends one request. in, when non-nil, is sent as the JSON body; out,
// when non-nil, receives the JSON answer. path is appended to the base URL
// as is: escape path segments with url.PathEscape.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("admin api: read %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp.StatusCode, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin api: decode %s %s: %w", method, path, err)
	}
	return nil
}

// send adds the token (and Client.App's name in AppHeader, with which
// `shoal server` chooses the app) to req and sends it. A dial failure is an
// *UnreachableError, an answer of another app's admin API a
// *WrongAppError (its body closed); other failures are wrapped.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	if c.App != "" {
		req.Header.Set(AppHeader, c.App)
	}
	resp, err := c.doRetrying(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{URL: c.base, Hint: c.Hint, Err: err}
		}
		return nil, fmt.Errorf("admin api: %w", err)
	}
	if got := resp.Header.Get(AppHeader); c.App != "" && got != "" && got != c.App {
		resp.Body.Close()
		return nil, &WrongAppError{Addr: req.URL.Host, Got: got, Want: c.App}
	}
	return resp, nil
}

// retryUnavailableFor bounds how long a call answered 503 with
// Retry-After is sent again: a cluster of servers electing a leader
// (issue 14) says so, having done nothing.
const retryUnavailableFor = 30 * time.Second

// doRetrying sends req, and again while the answer is 503 with a
// Retry-After (waiting 1 s each time, at most retryUnavailableFor in
// all) when its body can be sent again.
func (c *Client) doRetrying(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(retryUnavailableFor)
	for {
		resp, err := c.HTTP.Do(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			(req.Body != nil && req.GetBody == nil) || time.Now().After(deadline) {
			return resp, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t := time.NewTimer(time.Second)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req.Body = body
		}
	}
}

func apiError(status int, data []byte) *APIError {
	var eb api.ErrorBody
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	} else if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{Status: status, Message: msg}
}
