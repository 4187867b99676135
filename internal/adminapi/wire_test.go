package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/rollout"
)

// TestWireTypesAgree checks, for every route the CLI uses, that the
// client's copy of a wire type has exactly the JSON fields of the server's
// type: a server value with every field set decodes into the client type
// with DisallowUnknownFields, and both encode to the same set of keys. A
// field added on one side only fails here.
func TestWireTypesAgree(t *testing.T) {
	answers := []struct {
		route          string
		server, client any
	}{
		{"GET /v1/status, POST /v1/scale", api.Status{}, client.Status{}},
		{"GET /v1/events", api.Event{}, client.Event{}},
		{"GET /v1/releases", api.ReleaseInfo{}, client.Release{}},
		{"GET /v1/env", api.EnvVar{}, client.EnvVar{}},
		{"GET /v1/deploy", rollout.Progress{}, client.RolloutProgress{}},
		{"POST /v1/deploy stream", api.DeployLine{}, client.DeployLine{}},
		{"GET /v1/autoscale", api.AutoscaleStatus{}, client.Autoscale{}},
		{"GET /v1/lb/status", api.LBStatus{}, client.LBStatus{}},
		{"GET /v1/lb/pools", api.PoolList{}, api.PoolList{}},
		{"DELETE .../targets/{addr}, POST .../drain", api.DrainResult{}, client.DrainResult{}},
	}
	for _, a := range answers {
		sv := fill(t, reflect.TypeOf(a.server))
		data, err := json.Marshal(sv)
		if err != nil {
			t.Fatalf("%s: marshal server value: %v", a.route, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		cv := reflect.New(reflect.TypeOf(a.client))
		if err := dec.Decode(cv.Interface()); err != nil {
			t.Errorf("%s: the client cannot decode the server's answer: %v\n%s", a.route, err, data)
			continue
		}
		sk := keys(t, data)
		cdata, err := json.Marshal(fill(t, reflect.TypeOf(a.client)))
		if err != nil {
			t.Fatal(err)
		}
		ck := keys(t, cdata)
		if missing := minus(ck, sk); len(missing) > 0 {
			t.Errorf("%s: the client expects fields the server never sends: %v", a.route, missing)
		}
		if extra := minus(sk, ck); len(extra) > 0 {
			t.Errorf("%s: the server sends fields the client lacks: %v", a.route, extra)
		}
	}

	// Requests: every field the client sends must be one the route's
	// strict decoder accepts.
	requests := []struct {
		route          string
		client, server any
	}{
		{"POST /v1/deploy", client.DeployOptions{}, DeployRequest{}},
		{"POST /v1/rollback", api.RollbackRequest{}, RollbackRequest{}},
		{"POST /v1/env", api.EnvRequest{}, EnvRequest{}},
		{"POST /v1/scale", api.ScaleRequest{}, ScaleRequest{}},
		{"POST /v1/autoscale", api.AutoscaleRequest{}, AutoscaleRequest{}},
		{"POST /v1/lb/pools/{pool}/targets", client.TargetRequest{}, targetBody{}},
		{"PUT .../weight", client.WeightRequest{}, weightBody{}},
		{"POST .../drain", client.DrainRequest{}, drainBody{}},
		{"POST /v1/lb/maintenance", client.MaintenanceRequest{}, maintenanceBody{}},
	}
	for _, r := range requests {
		v := r.client
		if reflect.TypeOf(v).Kind() != reflect.Map {
			v = fill(t, reflect.TypeOf(v))
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		// Values the lb bodies validate later need not be valid here;
		// only the field names and JSON types are checked.
		data = bytes.ReplaceAll(data, []byte(`"x"`), []byte(`"1s"`))
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(reflect.New(reflect.TypeOf(r.server)).Interface()); err != nil {
			t.Errorf("%s: the server refuses the client's body %s: %v", r.route, data, err)
		}
	}

	// Error bodies: the client reports the server's message.
	srv := httptest.NewServer(Handle(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("%w: boom", ErrConflict)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL, "tok").Status(context.Background())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Message != "conflict: boom" {
		t.Errorf("error answer read as %#v", err)
	}
}

// fill returns a value of type typ with every exported field set to
// something that is not its zero value, so that omitempty and omitzero
// fields appear in its encoding.
func fill(t *testing.T, typ reflect.Type) any {
	t.Helper()
	v := reflect.New(typ).Elem()
	fillValue(t, v, 0)
	return v.Interface()
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	quantityType = reflect.TypeOf(rollout.Quantity{})
)

func fillValue(t *testing.T, v reflect.Value, depth int) {
	if depth > 8 {
		t.Fatalf("type %s nests too deep", v.Type())
	}
	switch v.Type() {
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)))
		return
	case quantityType:
		v.Set(reflect.ValueOf(rollout.Percent(25)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillValue(t, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillValue(t, s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		fillValue(t, k, depth+1)
		fillValue(t, e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillValue(t, v.Field(i), depth+1)
			}
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	default:
		t.Fatalf("cannot fill a %s", v.Type())
	}
}

// keys returns the dotted paths of every object key in a JSON document
// ("spec.policy.max_surge"; array elements add no segment).
func keys(t *testing.T, data []byte) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := strings.TrimPrefix(prefix+"."+k, ".")
				out = append(out, p)
				walk(p, e)
			}
		case []any:
			for _, e := range v {
				walk(prefix, e)
			}
		}
	}
	walk("", doc)
	sort.Strings(out)
	return slices.Compact(out)
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestWireJSONUnchanged holds the answers of the routes the CLI reads to the
// bytes they had before their types moved to package api: a value with every
// field set (fill) encodes exactly as the file in testdata/wire, which was
// written by the types as they were. A renamed, reordered, added or dropped
// field, or a changed encoding (an enum sent as a number), fails here.
func TestWireJSONUnchanged(t *testing.T) {
	for _, c := range []struct {
		file  string
		value any
	}{
		{"status.json", api.Status{}},
		{"event.json", api.Event{}},
		{"release.json", api.ReleaseInfo{}},
		{"env.json", api.EnvVar{}},
		{"progress.json", api.RolloutProgress{}},
		{"deploy_line.json", api.DeployLine{}},
		{"autoscale.json", api.AutoscaleStatus{}},
		{"lb_status.json", api.LBStatus{}},
		{"drain.json", api.DrainResult{}},
		{"error.json", ErrorBody{}},
		{"hosts.json", api.HostStatus{}},
	} {
		v := fill(t, reflect.TypeOf(c.value))
		// A rollout's spec is sent as its wire form, which
		// rollout.Spec.Progress derives: fill the rollout's own spec (its
		// quantities are "25%") and derive it, as the server does.
		spec := fill(t, reflect.TypeOf(rollout.Spec{})).(rollout.Spec).Progress()
		switch v := v.(type) {
		case api.RolloutProgress:
			v.Spec = spec
			got, err := json.MarshalIndent(v, "", "  ")
			check(t, c.file, got, err)
			continue
		case api.DeployLine:
			v.Progress.Spec, v.Result.Final.Spec = spec, spec
			got, err := json.MarshalIndent(v, "", "  ")
			check(t, c.file, got, err)
			continue
		}
		got, err := json.MarshalIndent(v, "", "  ")
		check(t, c.file, got, err)
	}
	// GET /v1/lb/pools answers the pools of the status under "pools".
	pools := fill(t, reflect.TypeOf(api.LBStatus{})).(api.LBStatus).Pools
	got, err := json.MarshalIndent(api.PoolList{Pools: pools}, "", "  ")
	check(t, "lb_pools.json", got, err)
}

// TestWireRequestsUnchanged holds the bodies the client sends to the bytes
// they had before their types moved to package api: every call of the client
// that sends a body goes to a server that records it, and the record matches
// testdata/wire/requests.txt line for line.
func TestWireRequestsUnchanged(t *testing.T) {
	var got bytes.Buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		fmt.Fprintf(&got, "%s %s %s\n", r.Method, r.URL.RequestURI(), bytes.TrimSpace(body.Bytes()))
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/v1/deploy") || r.URL.Path == "/v1/rollback" || r.URL.Path == "/v1/env" {
			fmt.Fprintln(w, `{"result":{"ok":true}}`)
			return
		}
		fmt.Fprintln(w, `{}`)
	}))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
	}{
		{"deploy, config only", func() error {
			_, err := c.Deploy(ctx, client.DeployOptions{ConfigOnly: true, Wait: true, By: "ann", Config: "app: web\n",
				ConfigFile: "/home/ann/web/shoal.yaml", Env: []client.EnvVar{{Name: "A", Value: "1"}, {Name: "K", Value: "s", Secret: true}}}, nil)
			return err
		}},
		{"deploy of an artifact", func() error {
			_, err := c.Deploy(ctx, client.DeployOptions{Config: "app: web\n", Digest: "sha256:" + strings.Repeat("ab", 32)}, nil)
			return err
		}},
		{"deploy, nothing sent", func() error { _, err := c.Deploy(ctx, client.DeployOptions{}, nil); return err }},
		{"has artifact", func() error { _, err := c.HasArtifact(ctx, "sha256:"+strings.Repeat("ab", 32)); return err }},
		{"upload artifact", func() error {
			return c.UploadArtifact(ctx, "sha256:"+strings.Repeat("ab", 32), strings.NewReader("gzip bytes"), 10)
		}},
		{"fetch artifact", func() error {
			_, err := c.FetchArtifact(ctx, "sha256:"+strings.Repeat("ab", 32), io.Discard)
			return err
		}},
		{"build failure", func() error { return c.ReportBuildFailure(ctx, `build command "exit 3" exited with status 3`, "ann") }},
		{"rollback", func() error { _, err := c.Rollback(ctx, 3, nil); return err }},
		{"rollback to the previous", func() error { _, err := c.Rollback(ctx, 0, nil); return err }},
		{"env", func() error {
			_, err := c.SetEnv(ctx, []client.EnvVar{{Name: "A", Value: "1"}, {Name: "K", Value: "s", Secret: true}}, []string{"B"}, nil)
			return err
		}},
		{"env, unset only", func() error { _, err := c.SetEnv(ctx, nil, []string{"B"}, nil); return err }},
		{"scale", func() error { _, err := c.Scale(ctx, 2); return err }},
		{"pause", func() error { _, err := c.PauseAutoscale(ctx, true); return err }},
		{"resume", func() error { _, err := c.PauseAutoscale(ctx, false); return err }},
		{"add target", func() error { return c.AddTarget(ctx, "web", "127.0.0.1:9001", 5) }},
		{"add target, default weight", func() error { return c.AddTarget(ctx, "web", "127.0.0.1:9001", 0) }},
		{"set weight", func() error { return c.SetWeight(ctx, "web", "127.0.0.1:9001", 7) }},
		{"drain", func() error { _, err := c.DrainTarget(ctx, "web", "127.0.0.1:9001", 10*time.Second, true); return err }},
		{"drain, pool timeout", func() error { _, err := c.DrainTarget(ctx, "web", "127.0.0.1:9001", 0, false); return err }},
		{"maintenance on", func() error { return c.Maintenance(ctx, true, 30*time.Second) }},
		{"maintenance off", func() error { return c.Maintenance(ctx, false, 0) }},
	}
	for _, call := range calls {
		if err := call.call(); err != nil {
			t.Fatalf("%s: %v", call.name, err)
		}
	}
	check(t, "requests.txt", bytes.TrimSuffix(got.Bytes(), []byte("\n")), nil)
}

// check compares got with testdata/wire/file (SHOAL_UPDATE_WIRE=1
// rewrites the file instead, for a change of the wire to review in git).
func check(t *testing.T, file string, got []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "wire", file))
	if err != nil {
		t.Fatal(err)
	}
	if got = append(got, '\n'); !bytes.Equal(got, want) {
		if os.Getenv("SHOAL_UPDATE_WIRE") == "1" { // a reviewed change of the wire: rewrite the file
			if err := os.WriteFile(filepath.Join("testdata", "wire", file), got, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("the answer encodes differently from testdata/wire/%s:\n%s", file, got)
	}
}
