package lb

import (
	"net/http"
	"net/textproto"
	"sync"
)

// informRelay passes a target's informational answers (103 Early Hints,
// 102 Processing) to the client on the net/http path while an attempt
// waits for the answer's head. The transport calls got from its own
// goroutine; after stop, once the attempt has its answer or failed, it
// passes nothing more, so it never writes beside the handler. 100
// Continue is the balancer's own business with its client (net/http's
// servers and the loops' HTTP/2 fallback send it when the body is
// read), and 101 belongs to upgrades, which are tunnelled apart.
// An HTTP/1.0 client gets none (RFC 9110 15.2).
type informRelay struct {
	mu   sync.Mutex
	w    http.ResponseWriter
	done bool
}

// newInformRelay returns the relay of an attempt of r answered on w.
func newInformRelay(w http.ResponseWriter, r *http.Request) *informRelay {
	return &informRelay{w: w, done: !r.ProtoAtLeast(1, 1)}
}

// got is httptrace.ClientTrace.Got1xxResponse. The fields go to the
// client with the code only: the answer's own header is restored after.
func (ir *informRelay) got(code int, h textproto.MIMEHeader) error {
	if code == http.StatusContinue || code == http.StatusSwitchingProtocols {
		return nil
	}
	ir.mu.Lock()
	defer ir.mu.Unlock()
	if ir.done {
		return nil
	}
	wh := ir.w.Header()
	saved := make(map[string][]string, len(h))
	for k, vs := range h {
		if prev, ok := wh[k]; ok {
			saved[k] = prev
		}
		wh[k] = vs
	}
	ir.w.WriteHeader(code)
	for k := range h {
		if prev, ok := saved[k]; ok {
			wh[k] = prev
		} else {
			delete(wh, k)
		}
	}
	return nil
}

// stop ends the relay; it returns after a call of got in progress.
func (ir *informRelay) stop() {
	ir.mu.Lock()
	ir.done = true
	ir.mu.Unlock()
}
