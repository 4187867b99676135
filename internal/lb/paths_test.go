package lb

import "testing"

// netHTTPPathTest is the name of the test that re-runs key tests with
// Limits.DisableFastPath set (start reads it from the test's name).
const netHTTPPathTest = "TestNetHTTPPath"

// TestNetHTTPPath runs the tests that pin the balancer's behaviour at the
// edges (smuggling, retries, streaming, limits, reload, drain) a second
// time on the net/http path alone: every other test runs with the fast
// path on, which hands exactly these cases over, so without this the path
// behind the switch would only be tested through hand-overs.
func TestNetHTTPPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"SmugglingRejected", TestSmugglingRejected},
		{"CLWithTEClosesConnection", TestCLWithTEClosesConnection},
		{"PipelinedRequestsStillWork", TestPipelinedRequestsStillWork},
		{"H2CUpgradeNotForwarded", TestH2CUpgradeNotForwarded},
		{"RetriesWhileBackendCloses", TestRetriesWhileBackendCloses},
		{"PostResetIsNotRetried", TestPostResetIsNotRetried},
		{"GetResetIsRetried", TestGetResetIsRetried},
		{"RefusedPostIsRetried", TestRefusedPostIsRetried},
		{"TryTimeout504", TestTryTimeout504},
		{"TryTimeoutOff", TestTryTimeoutOff},
		{"RetryBudget", TestRetryBudget},
		{"ForwardedHeadersUntrusted", TestForwardedHeadersUntrusted},
		{"RequestIDGeneratedUnique", TestRequestIDGeneratedUnique},
		{"NoRoute404AndHostRouting", TestNoRoute404AndHostRouting},
		{"StreamingFlushes", TestStreamingFlushes},
		{"TrailersAndChunkedUpload", TestTrailersAndChunkedUpload},
		{"HeaderTooLarge431", TestHeaderTooLarge431},
		{"URITooLong414", TestURITooLong414},
		{"HeaderLimitExact", TestHeaderLimitExact},
		{"HeaderLimitPipelined", TestHeaderLimitPipelined},
		{"RequestLineLimit", TestRequestLineLimit},
		{"BodyTooLarge413", TestBodyTooLarge413},
		{"HeaderTimeout", TestHeaderTimeout},
		{"ReloadUnderLoad", TestReloadUnderLoad},
		{"ReloadKeepsTargetState", TestReloadKeepsTargetState},
		{"DrainDeadlineCutsRequest", TestDrainDeadlineCutsRequest},
		{"ShutdownLetsInFlightFinish", TestShutdownLetsInFlightFinish},
		{"StickyCookie", TestStickyCookie},
		{"WebSocketEcho", TestWebSocketEcho},
		{"DrainClosesWebSocket", TestDrainClosesWebSocket},
		{"ShutdownClosesWebSocket", TestShutdownClosesWebSocket},
		{"WebSocketIdleTimeout", TestWebSocketIdleTimeout},
		{"TunnelBufferedBytes", TestTunnelBufferedBytes},
		{"InFlightCompletesDuringDrain", TestInFlightCompletesDuringDrain},
		{"HeldExchangesLeaveLatency", TestHeldExchangesLeaveLatency},
	} {
		t.Run(tc.name, tc.test)
	}
}
