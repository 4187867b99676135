package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/lb"
)

// TestPoolProtocol: lb.yaml's pools[].protocol and shoal.yaml's
// balancer.protocol take http1 (the default) or h2c; anything else is
// refused with its place in the file.
func TestPoolProtocol(t *testing.T) {
	const lbSrc = "listeners: [{name: l, listen: ':1'}]\nroutes: [{name: a, pool: p}]\npools: [{name: p%s}]\n"
	const appSrc = "app: web\nrun: {command: x}\n%s"
	for in, want := range map[string]lb.Protocol{"": lb.ProtocolHTTP1, "http1": lb.ProtocolHTTP1, "h2c": lb.ProtocolH2C} {
		field, appField := "", ""
		if in != "" {
			field, appField = ", protocol: "+in, "balancer: {protocol: "+in+"}\n"
		}
		f, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(lbSrc, field)))
		if err != nil {
			t.Fatalf("lb.yaml protocol %q: %v", in, err)
		}
		if got := f.Balancer.Pools[0].Protocol; got != want {
			t.Errorf("lb.yaml protocol %q: %v, want %v", in, got, want)
		}
		a, err := Parse("shoal.yaml", []byte(fmt.Sprintf(appSrc, appField)), t.TempDir())
		if err != nil {
			t.Fatalf("shoal.yaml protocol %q: %v", in, err)
		}
		if got := a.PoolConfig(nil).Protocol; got != want {
			t.Errorf("shoal.yaml protocol %q: %v, want %v", in, got, want)
		}
	}
	_, err := ParseLB("lb.yaml", []byte(fmt.Sprintf(lbSrc, ", protocol: h3")))
	if want := `lb.yaml:3:29: pools[0].protocol: unknown protocol "h3" (want http1, h2c, or h2 with tls)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("lb.yaml protocol h3: %v, want %q", err, want)
	}
	_, err = Parse("shoal.yaml", []byte(fmt.Sprintf(appSrc, "balancer: {protocol: grpc}\n")), t.TempDir())
	if want := `shoal.yaml:3:22: balancer.protocol: unknown protocol "grpc" (want http1, h2c, or h2 with tls)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("shoal.yaml protocol grpc: %v, want %q", err, want)
	}
}
