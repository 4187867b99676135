package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/lb"
)

// TestCompressionOptions: balancer.compression in shoal.yaml and
// routes[].compression in lb.yaml are the same keys with the same
// result; absent means the balancer's defaults; bad values are refused
// with file:line:col.
func TestCompressionOptions(t *testing.T) {
	const keys = "{enabled: true, types: [text/html, 'application/*'], min_size: 2KiB, level: 5}"
	want := lb.Compression{Types: []string{"text/html", "application/*"}, MinSize: 2048, Level: 5}
	check := func(what string, got lb.Compression, want lb.Compression) {
		t.Helper()
		if got.Off != want.Off || got.MinSize != want.MinSize || got.Level != want.Level || !slices.Equal(got.Types, want.Types) {
			t.Errorf("%s: %+v, want %+v", what, got, want)
		}
	}

	a, err := Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  compression: "+keys+"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	check("shoal.yaml", a.BalancerConfig(nil, nil).Routes[0].Compression, want)
	check("shoal.yaml routes", a.Routes()[0].Compression, want)
	a, err = Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	check("shoal.yaml default", a.BalancerConfig(nil, nil).Routes[0].Compression, lb.Compression{})
	a, err = Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  compression: {enabled: false}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	check("shoal.yaml off", a.BalancerConfig(nil, nil).Routes[0].Compression, lb.Compression{Off: true})

	src := "listeners: [{name: web, listen: ':80'}]\nroutes:\n  - {name: r, pool: p, compression: " + keys + "}\n  - {name: s, path_prefix: /x, pool: p}\npools: [{name: p}]\n"
	f, err := LoadLB(writeLB(t, src))
	if err != nil {
		t.Fatal(err)
	}
	check("lb.yaml", f.Balancer.Routes[0].Compression, want)
	check("lb.yaml default", f.Balancer.Routes[1].Compression, lb.Compression{})

	for _, tc := range []struct{ keys, err string }{
		{"{level: 10}", "routes[0].compression.level: must be 1 to 9, got 10"},
		{"{types: [html]}", `routes[0].compression.types[0]: "html" is not a media type such as text/html or text/*`},
		{"{types: []}", "routes[0].compression.types: must list at least one type"},
		{"{min_size: -1}", "routes[0].compression.min_size"},
		{"{enabled: maybe}", "routes[0].compression.enabled: expected true or false"},
		{"{level: 1, gzip: true}", "routes[0].compression.gzip"},
	} {
		_, err := LoadLB(writeLB(t, strings.Replace(src, keys, tc.keys, 1)))
		if err == nil || !strings.Contains(err.Error(), "lb.yaml:3:") || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("lb.yaml %s: %v, want %q at line 3", tc.keys, err, tc.err)
		}
	}
	_, err = Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nbalancer:\n  compression:\n    level: 0\n    types: [x/y, 'text/']\n"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `shoal.yaml:6:18: balancer.compression.types[1]: "text/" is not a media type`) {
		t.Errorf("shoal.yaml bad type: %v", err)
	}
}
