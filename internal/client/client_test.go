package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDoSendsTokenAndMapsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing or wrong admin token"}`))
			return
		}
		switch r.URL.Path {
		case "/v1/lb/pools/a%2Fb/targets/127.0.0.1:1/weight", "/v1/lb/pools/a/b/targets/127.0.0.1:1/weight":
			// The pool name is one escaped segment.
			if r.URL.EscapedPath() != "/v1/lb/pools/a%2Fb/targets/127.0.0.1:1/weight" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			w.Write([]byte(`{}`))
		case "/plain":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream said no " + strings.Repeat("x", 300)))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"no pool named \"x\""}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	err := New(srv.URL, "wrong").Reload(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "missing or wrong admin token" {
		t.Fatalf("401: %v", err)
	}
	c := New(srv.URL+"/", "tok")
	if err := c.SetWeight(ctx, "a/b", "127.0.0.1:1", 2); err != nil {
		t.Fatalf("escaped path: %v", err)
	}
	if err := c.AddTarget(ctx, "x", "127.0.0.1:1", 1); !IsStatus(err, 404) || !strings.Contains(err.Error(), `no pool named "x"`) {
		t.Fatalf("404: %v", err)
	}
	err = c.do(ctx, http.MethodGet, "/plain", nil, nil)
	if !errors.As(err, &ae) || ae.Status != 502 || !strings.HasPrefix(ae.Message, "upstream said no") || len(ae.Message) > 210 {
		t.Fatalf("non-JSON error: %v", err)
	}
}
