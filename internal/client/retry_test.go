package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestRetriesUnavailable: a 503 with Retry-After (a cluster with no
// leader yet: nothing was done) is asked again, body included, until the
// answer is another; a 503 without it is an error at once.
func TestRetriesUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/scale" && string(body) != `{"desired":3}` {
			t.Errorf("call %d: body %q", n, body)
		}
		switch {
		case r.URL.Path == "/v1/plain503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case n <= 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"unavailable: the cluster has no leader now"}`)
		default:
			io.WriteString(w, `{"desired":3}`)
		}
	}))
	defer srv.Close()
	c := New(srv.URL, "tok")
	if _, err := c.Scale(context.Background(), 3); err != nil {
		t.Fatalf("scale after two 503s: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	calls.Store(10)
	err := c.do(context.Background(), http.MethodGet, "/v1/plain503", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || calls.Load() != 11 {
		t.Fatalf("a 503 without Retry-After: %v after %d calls", err, calls.Load()-10)
	}
}
