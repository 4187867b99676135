package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

// The fuzz targets below drive the real handlers, on a real controller
// that is not running, through httptest.ResponseRecorder. Their
// invariants: no panic; a body or query the route cannot accept answers
// 4xx; the only 5xx is the stopped controller's "not running" for a
// request that was well formed; nothing marked secret comes back.

// serve runs one request through h and returns the recorder.
func serve(h http.Handler, ctx context.Context, method, path, body string) *httptest.ResponseRecorder {
	return serveURL(h, ctx, method, &url.URL{Path: path}, body)
}

// serveURL is serve with a URL built by the caller, raw query included.
func serveURL(h http.Handler, ctx context.Context, method string, u *url.URL, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/", strings.NewReader(body)).WithContext(ctx)
	req.URL = u
	req.RequestURI = u.RequestURI()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// strictOK reports whether body decodes strictly into v as the routes
// decode it (an empty body counts as {}).
func strictOK(body string, v any) bool {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return strings.TrimSpace(body) == ""
	}
	return !dec.More()
}

// checkAnswer fails on a 5xx other than "not running" for a well-formed
// request, and on anything but 400 for a malformed one.
func checkAnswer(t *testing.T, what, in string, rec *httptest.ResponseRecorder, wellFormed bool) {
	t.Helper()
	switch {
	case !wellFormed && rec.Code != http.StatusBadRequest:
		t.Fatalf("%s %q: status %d for a malformed request, want 400: %s", what, in, rec.Code, rec.Body)
	case rec.Code >= 500 && !strings.Contains(rec.Body.String(), "not running"):
		t.Fatalf("%s %q: status %d: %s", what, in, rec.Code, rec.Body)
	}
}

func FuzzDeployBodies(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, `{"config_only":true,"wait":true,"by":"ann"}`, `{"version":0}`, `{"version":-3}`,
		`{"version":1e99}`, `{"by":1}`, `[]`, `null`, `{} {}`, `{"config_only":"yes"}`,
	} {
		f.Add(s)
	}
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(f))
	f.Fuzz(func(t *testing.T, body string) {
		var dr DeployRequest
		checkAnswer(t, "deploy", body, serve(mux, context.Background(), "POST", "/v1/deploy", body), strictOK(body, &dr))
		var rr RollbackRequest
		ok := strictOK(body, &rr) && rr.Version >= 0
		checkAnswer(t, "rollback", body, serve(mux, context.Background(), "POST", "/v1/rollback", body), ok)
	})
}

func FuzzEnvBody(f *testing.F) {
	for _, s := range []string{
		`{"set":[{"name":"API_KEY","value":"s3cr3t-value","secret":true}]}`,
		`{"set":[{"name":"bad name","value":"hunter2-hunter2","secret":true}],"unset":["X"]}`,
		`{"set":[{"name":"PORT","value":"correct-horse","secret":true}]}`,
		`{"unset":["A","=B"]}`, `{}`, ``, `{"set":null}`, `{"set":[{"name":1}]}`, `{"wait":true,"set":[]}`,
	} {
		f.Add(s)
	}
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(f))
	f.Fuzz(func(t *testing.T, body string) {
		var req EnvRequest
		ok := strictOK(body, &req) && len(req.Set)+len(req.Unset) > 0
		rec := serve(mux, context.Background(), "POST", "/v1/env", body)
		if rec.Code >= 400 && rec.Code < 500 && ok {
			// Names the controller refuses (PORT, "a b") are its 400s.
			ok = !strings.Contains(rec.Body.String(), "env:")
		}
		checkAnswer(t, "env", body, rec, ok)
		listed := serve(mux, context.Background(), "GET", "/v1/env", "")
		if listed.Code != http.StatusOK {
			t.Fatalf("GET /v1/env after %q: %d %s", body, listed.Code, listed.Body)
		}
		// Every secret override is listed redacted, whichever request
		// stored it.
		var vs []api.EnvVar
		if err := json.Unmarshal(listed.Body.Bytes(), &vs); err != nil {
			t.Fatalf("GET /v1/env: %v", err)
		}
		for _, v := range vs {
			if v.Secret && v.Value != "[redacted]" {
				t.Fatalf("secret %s listed with its value %q", v.Name, v.Value)
			}
		}
		for _, v := range req.Set {
			if v.Secret && len(v.Value) >= 6 && leaks(rec.Body.Bytes(), v.Value) && !echoedElsewhere(req, v.Value) {
				t.Fatalf("secret value %q of %s echoed: %s", v.Value, v.Name, rec.Body)
			}
		}
	})
}

// leaks reports whether secret appears in a JSON answer, raw or escaped.
func leaks(answer []byte, secret string) bool {
	esc, _ := json.Marshal(secret)
	return bytes.Contains(answer, []byte(secret)) || bytes.Contains(answer, esc[1:len(esc)-1])
}

// echoedElsewhere reports whether s is also part of something the answer
// may legitimately show: a name, an unset name, a value not marked
// secret, or the fixed words of an answer.
func echoedElsewhere(req EnvRequest, s string) bool {
	const fixed = `env: a deploy is in progress; nothing changed: controller is not running [redacted] name value secret`
	if strings.Contains(fixed, s) {
		return true
	}
	for _, v := range req.Set {
		if strings.Contains(v.Name, s) || (!v.Secret && strings.Contains(v.Value, s)) {
			return true
		}
	}
	for _, n := range req.Unset {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func FuzzAutoscaleBody(f *testing.F) {
	for _, s := range []string{`{"paused":true}`, `{"paused":false}`, `{}`, ``, `{"paused":1}`, `{"paused":true}{}`, `[true]`} {
		f.Add(s)
	}
	mux := http.NewServeMux()
	AutoscaleRoutes(mux, newTestController(f))
	f.Fuzz(func(t *testing.T, body string) {
		var req AutoscaleRequest
		ok := strictOK(body, &req) && req.Paused != nil
		rec := serve(mux, context.Background(), "POST", "/v1/autoscale", body)
		if ok {
			// The test app has no autoscale section.
			if rec.Code != http.StatusConflict {
				t.Fatalf("autoscale %q: %d, want 409: %s", body, rec.Code, rec.Body)
			}
			return
		}
		checkAnswer(t, "autoscale", body, rec, false)
	})
}

func FuzzScaleRoute(f *testing.F) {
	for _, s := range []string{`{"desired":0}`, `{"desired":3}`, `{"desired":-1}`, `{"desired":1e20}`, `{}`, ``, `{"desired":null}`} {
		f.Add(s)
	}
	mux := http.NewServeMux()
	ControllerRoutes(mux, newTestController(f))
	f.Fuzz(func(t *testing.T, body string) {
		rec := serve(mux, context.Background(), "POST", "/v1/scale", body)
		var req ScaleRequest
		ok := strictOK(body, &req) && req.Desired != nil
		if ok && *req.Desired != 0 {
			// The group is not prepared: min = max = 0, so any other
			// count is out of range.
			ok = false
		}
		if ok && rec.Code >= 500 {
			// Scaling to 0 on a stopped controller may fail, but not as
			// a malformed request.
			return
		}
		checkAnswer(t, "scale", body, rec, ok)
	})
}

func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{"after=0&limit=10", "after=-1", "limit=x", "follow=true", "after=18446744073709551615",
		"limit=99999999999999999999", "tail=5", "tail=-5&follow=true", "%zz", "after=1&after=2"} {
		f.Add(s, "web-v1-abc")
	}
	mux := http.NewServeMux()
	ControllerRoutes(mux, newTestController(f))
	canceled, cancel := context.WithCancel(context.Background())
	cancel() // a follow answers what it has and ends at once
	f.Fuzz(func(t *testing.T, query, id string) {
		q, _ := url.ParseQuery(query)
		ev := serveURL(mux, canceled, "GET", &url.URL{Path: "/v1/events", RawQuery: query}, "")
		wantEv := nonNegInt(q.Get("after")) && nonNegInt(q.Get("limit"))
		if (ev.Code == http.StatusOK) != wantEv || (!wantEv && ev.Code != http.StatusBadRequest) {
			t.Fatalf("events?%s: %d: %s", query, ev.Code, ev.Body)
		}
		if id == "" {
			id = "x"
		}
		lg := serveURL(mux, canceled, "GET", &url.URL{Path: "/v1/instances/" + id + "/logs",
			RawPath: "/v1/instances/" + url.PathEscape(id) + "/logs", RawQuery: query}, "")
		switch {
		case !nonNegInt(q.Get("tail")) && lg.Code != http.StatusBadRequest:
			t.Fatalf("logs %q ?%s: %d, want 400: %s", id, query, lg.Code, lg.Body)
		case lg.Code >= 500:
			t.Fatalf("logs %q ?%s: %d: %s", id, query, lg.Code, lg.Body)
		}
	})
}

// nonNegInt mirrors intParam's rule: empty or a non-negative int.
func nonNegInt(s string) bool {
	if s == "" {
		return true
	}
	_, err := intParam(s, 0)
	return err == nil
}
