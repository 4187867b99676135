package lb

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/pool"
)

func targets(addrs ...string) []pool.TargetSpec {
	var out []pool.TargetSpec
	for _, a := range addrs {
		out = append(out, pool.TargetSpec{Addr: a})
	}
	return out
}

func testRouter() *router {
	routes := []Route{
		{Name: "exact", Host: "app.example.com", PathPrefix: "/"},
		{Name: "exact-api", Host: "app.example.com", PathPrefix: "/api"},
		{Name: "exact-api-v2", Host: "app.example.com", PathPrefix: "/api/v2/"},
		{Name: "wild", Host: "*.example.com", PathPrefix: "/"},
		{Name: "wild-deep", Host: "*.eu.example.com", PathPrefix: "/"},
		{Name: "any-static", Host: "", PathPrefix: "/static"},
		{Name: "any", Host: "", PathPrefix: "/"},
		{Name: "only-admin", Host: "admin.test", PathPrefix: "/admin"},
	}
	return newRouter(routes, nil, nil, nil)
}

func TestRouterMatch(t *testing.T) {
	rt := testRouter()
	cases := []struct{ host, path, want string }{
		{"app.example.com", "/", "exact"},
		{"App.Example.COM", "/", "exact"},
		{"app.example.com:443", "/x", "exact"},
		{"app.example.com.", "/x", "exact"},
		{"app.example.com", "/api", "exact-api"},
		{"app.example.com", "/api/users", "exact-api"},
		{"app.example.com", "/apiary", "exact"},
		{"app.example.com", "/api/v2/x", "exact-api-v2"},
		{"app.example.com", "/api/v2", "exact-api"},
		{"x.example.com", "/", "wild"},
		{"a.b.example.com", "/", "wild"},
		{"x.eu.example.com", "/", "wild-deep"},
		{"example.com", "/", "any"},
		{"other", "/static/a.css", "any-static"},
		{"other", "/staticx", "any"},
		{"admin.test", "/admin/x", "only-admin"},
		{"admin.test", "/", "any"}, // falls through to any host
		{"[::1]:80", "/", "any"},
	}
	for _, tc := range cases {
		r := rt.match(tc.host, tc.path)
		if r == nil || r.name != tc.want {
			got := "<nil>"
			if r != nil {
				got = r.name
			}
			t.Errorf("match(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	empty := newRouter([]Route{{Name: "a", Host: "a.test", PathPrefix: "/"}}, nil, nil, nil)
	if r := empty.match("b.test", "/"); r != nil {
		t.Errorf("unexpected match %s", r.name)
	}
}

func BenchmarkRoute(b *testing.B) {
	rt := testRouter()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if rt.match("x.eu.example.com", "/api/v2/users/42") == nil {
			b.Fatal("no match")
		}
	}
}
