package h1

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests; internal/archtest
// checks that every package with tests has this.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKinds is a field table of the shape the balancer passes
// (lb.fieldKinds, built from its hop-by-hop and client-fact lists, whose
// own test checks it): the names the parsers read, the RFC 9110 7.6.1
// hop-by-hop fields dropped, Transfer-Encoding and Expect refused.
var testKinds = Kinds{
	"host":                FieldHost,
	"content-length":      FieldContentLength,
	"x-request-id":        FieldRequestID,
	"cookie":              FieldCookie,
	"expect":              FieldRefuse,
	"http2-settings":      FieldRefuse,
	"x-forwarded-for":     FieldClient,
	"forwarded":           FieldClient,
	"x-real-ip":           FieldClient,
	"x-forwarded-proto":   FieldClient,
	"x-forwarded-host":    FieldClient,
	"proxy-connection":    FieldHop,
	"keep-alive":          FieldHop,
	"proxy-authenticate":  FieldHop,
	"proxy-authorization": FieldHop,
	"te":                  FieldHop,
	"trailer":             FieldHop,
	"connection":          FieldConnection,
	"upgrade":             FieldUpgrade,
	"transfer-encoding":   FieldRefuse,
}
