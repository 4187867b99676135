// Package client is the Go client of Shoal's admin API, used by the CLI
// and the tests. It speaks JSON over HTTP with the bearer token, and turns
// every non-2xx answer into an *APIError carrying the server's message.
//
// The wire types are defined here, not imported from the server packages,
// so that the CLI does not link the daemons' internals to talk to them;
// package adminapi's tests decode its answers with this client to keep the
// two in agreement.
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
	"time"
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
}

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
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
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

func apiError(status int, data []byte) *APIError {
	var eb struct {
		Error string `json:"error"`
	}
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
