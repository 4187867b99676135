package lb

import "testing"

// tlsRecordsTest is the name of the test that re-runs the TLS listeners'
// tests with Limits.TLSRecords set (start reads it from the test's name):
// TLS 1.3 connections then run on our record layer (tlsrec.go).
const tlsRecordsTest = "TestTLSRecords"

// TestTLSRecords runs the tests of what TLS listeners do on the loops
// (HTTP/1.1 and HTTP/2, hand-over to net/http with Request.TLS, WebSockets
// over TLS and over HTTP/2, HTTP/2 fallback streams, close_notify, limits,
// timeouts, drain, reload, certificate rotation, session tickets) again with
// our record layer serving the records.
func TestTLSRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"HTTP2AndSNI", TestHTTP2AndSNI},
		{"TLSSmuggling", TestTLSSmuggling},
		{"WebSocketOverTLS", TestWebSocketOverTLS},
		{"CertificateReplacedOnDisk", TestCertificateReplacedOnDisk},
		{"DrainFinishesTLSHandshake", TestDrainFinishesTLSHandshake},
		{"HTTP2MalformedMethod", TestHTTP2MalformedMethod},
		{"HeaderLimitExactHTTP2", TestHeaderLimitExactHTTP2},
		{"ClientRTTRecorded", TestClientRTTRecorded},
		{"TLSFastPathServes", TestTLSFastPathServes},
		{"TLSFastPathPipelined", TestTLSFastPathPipelined},
		{"TLSFastPathHandsOver", TestTLSFastPathHandsOver},
		{"TLSFastPathClientCloses", TestTLSFastPathClientCloses},
		{"TLSFastPathSticky", TestTLSFastPathSticky},
		{"TLSFastPathTimeouts", TestTLSFastPathTimeouts},
		{"TLSFastPathConnectionLimit", TestTLSFastPathConnectionLimit},
		{"TLSFastPathShutdown", TestTLSFastPathShutdown},
		{"TLSFastPathReload", TestTLSFastPathReload},
		{"TLSFastPathAdoptedWhileDraining", TestTLSFastPathAdoptedWhileDraining},
		{"TLSFastPathCloseNotify", TestTLSFastPathCloseNotify},
		{"TLSFastPathCloseNotifyDrain", TestTLSFastPathCloseNotifyDrain},
		{"H2FastPathServes", TestH2FastPathServes},
		{"H2FastPathSmuggling", TestH2FastPathSmuggling},
		{"H2FastPathFlowControl", TestH2FastPathFlowControl},
		{"H2FastPathTargetDies", TestH2FastPathTargetDies},
		{"H2FastPathDrain", TestH2FastPathDrain},
		{"WebSocketOverHTTP2", TestWebSocketOverHTTP2},
		{"WebSocketOverHTTP2Idle", TestWebSocketOverHTTP2Idle},
		{"SessionTicketsRotateAndExpire", TestSessionTicketsRotateAndExpire},
		{"SessionTicketsSharedByListeners", TestSessionTicketsSharedByListeners},
	} {
		t.Run(tc.name, tc.test)
	}
}

// recServed is how many connections of lb's listener "web" our record
// layer took over.
func recServed(t *testing.T, lb *running) int64 {
	t.Helper()
	s := lb.listeners["web"].tlsL.secrets
	if s == nil {
		t.Fatal("TLS listener without our record layer")
	}
	return s.served.Load()
}
