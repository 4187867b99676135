package lb

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/pool"
)

func TestRetryable(t *testing.T) {
	dial := &dialError{syscall.ECONNREFUSED}
	reset := os.NewSyscallError("read", syscall.ECONNRESET)
	for _, tc := range []struct {
		name            string
		err             error
		method          string
		hasBody, replay bool
		want            bool
	}{
		{"refused GET", dial, "GET", false, true, true},
		{"refused POST without body", dial, "POST", false, true, true},
		{"refused POST, body untouched or buffered", dial, "POST", true, true, true},
		{"refused POST, streamed body read", dial, "POST", true, false, false},
		{"reset GET", reset, "GET", false, true, true},
		{"reset HEAD", reset, "HEAD", false, true, true},
		{"reset PUT without body", reset, "PUT", false, true, true},
		{"reset DELETE", reset, "DELETE", false, true, true},
		{"reset PUT with body", reset, "PUT", true, true, false},
		{"reset POST without body", reset, "POST", false, true, false},
		{"reset POST with body", reset, "POST", true, true, false},
		{"reset PATCH without body", reset, "PATCH", false, true, false},
		{"bad response GET", h1.ErrBadResponse, "GET", false, true, true},
		{"bad response POST", h1.ErrBadResponse, "POST", false, true, false},
		{"timeout POST", os.ErrDeadlineExceeded, "POST", false, true, false},
		{"drain deadline GET", pool.ErrDrainDeadline, "GET", false, true, false},
		{"drain deadline wrapped in a dial error", &dialError{pool.ErrDrainDeadline}, "GET", false, true, false},
	} {
		if got := retryable(tc.err, tc.method, tc.hasBody, tc.replay); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMayRetryBoundsTriesAndBudget(t *testing.T) {
	reset := os.NewSyscallError("read", syscall.ECONNRESET)
	b := newRetryBudget(0, 1) // one retry per second
	if mayRetry(reset, "GET", false, true, 1, 2, b) {
		t.Fatal("retry past the last try")
	}
	if mayRetry(reset, "POST", false, true, 0, 2, b) {
		t.Fatal("POST retried")
	}
	if !mayRetry(reset, "GET", false, true, 0, 2, b) {
		t.Fatal("GET with a try and budget left not retried")
	}
	if mayRetry(reset, "GET", false, true, 0, 2, b) {
		t.Fatal("retry beyond the budget")
	}
}

func TestAnswerFor(t *testing.T) {
	for _, tc := range []struct {
		err        error
		closeAfter bool
		status     int
		msg        string
		close      bool
	}{
		{errNoRoute, false, 404, "no route matches this host and path", false},
		{errURITooLong, false, 414, "Request URI Too Long", false},
		{errRequestLineTooLong, false, 414, "Request URI Too Long", false},
		{errBadMethod, false, 400, "Bad Request", true},
		{errHeadTooLarge, false, 431, "Request Header Fields Too Large", true},
		{errMethod, true, 405, "Method Not Allowed", true},
		{errMethod, false, 405, "Method Not Allowed", false},
		{pool.ErrNoTarget, false, 503, "Service Unavailable", false},
		{&http.MaxBytesError{Limit: 1}, false, 413, "Request Entity Too Large", true},
		{&h1.FramingError{Reason: "x"}, false, 400, "Bad Request", true},
		{clientBodyError{errors.New("cut")}, false, 400, "Bad Request", true},
		{pool.ErrDrainDeadline, false, 502, "Bad Gateway", false},
		{context.DeadlineExceeded, false, 504, "Gateway Timeout", false},
		{os.ErrDeadlineExceeded, false, 504, "Gateway Timeout", false},
		{&dialError{syscall.ECONNREFUSED}, false, 502, "Bad Gateway", false},
		{&dialError{syscall.ECONNREFUSED}, true, 502, "Bad Gateway", true},
	} {
		a := answerFor(tc.err, tc.closeAfter)
		if a.status != tc.status || a.msg != tc.msg || a.close != tc.close {
			t.Errorf("answerFor(%v, %v) = %+v, want {%d %q %v}", tc.err, tc.closeAfter, a, tc.status, tc.msg, tc.close)
		}
	}
}

// TestFieldKindsFollowTheLists: every hop-by-hop and client-fact header is
// dropped (or read, then dropped, or handed over) by the fast path's
// parser, as removeHopHeaders and setForwarded drop them on the net/http
// path.
func TestFieldKindsFollowTheLists(t *testing.T) {
	for _, k := range hopHeaders {
		switch got := fieldKinds[h1.Lower(k)]; {
		case k == "Connection" && got == h1.FieldConnection, k == "Upgrade" && got == h1.FieldUpgrade,
			k == "Transfer-Encoding" && got == h1.FieldRefuse, got == h1.FieldHop:
		default:
			t.Errorf("%s: kind %d", k, got)
		}
	}
	for _, k := range clientHeaders {
		if got := fieldKinds[h1.Lower(k)]; got != h1.FieldClient {
			t.Errorf("%s: kind %d, want FieldClient", k, got)
		}
	}
	for _, k := range []string{"accept", "x-custom", "authorization", "cookie2"} {
		if got := fieldKinds[k]; got != h1.FieldOther {
			t.Errorf("%s: kind %d, want FieldOther", k, got)
		}
	}
	h := http.Header{"Connection": {"X-A, x-b"}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}}
	for _, k := range hopHeaders {
		h[k] = append(h[k], "v")
	}
	removeHopHeaders(h)
	if len(h) != 1 || h.Get("X-C") != "3" {
		t.Errorf("after removeHopHeaders: %v", h)
	}
}

func TestUntrustedForwarded(t *testing.T) {
	h := http.Header{}
	for _, k := range clientHeaders {
		h[k] = []string{"forged"}
	}
	c := netip.MustParseAddr("192.0.2.7")
	setForwarded(h, c, false, "app.example", "https")
	v := untrustedForwarded("192.0.2.7", "https", "app.example", forwardedElement(c, "app.example", "https"))
	want := map[string]string{
		"X-Forwarded-For":   "192.0.2.7",
		"X-Real-Ip":         "192.0.2.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "app.example",
		"Forwarded":         "for=192.0.2.7;host=app.example;proto=https",
	}
	for i, k := range clientHeaders {
		if v[i] != want[k] || len(h[k]) != 1 || h[k][0] != want[k] {
			t.Errorf("%s: untrustedForwarded %q, setForwarded %q, want %q", k, v[i], h[k], want[k])
		}
	}
}
