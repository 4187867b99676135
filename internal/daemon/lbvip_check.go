package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/client"
)

// The balancer's health check, run by the keepalived guard
// (lbvip_guard.go) in its own process every second: the check `shoal lb
// check` makes (client.CheckBalancer: the admin API's status within
// 1.5 s), with keepalived's fall/rise rule kept here (two failures in a
// row make the node unhealthy, two passes healthy again). keepalived
// watches the result in a track file (track_file, weight 0: a non-zero
// number puts the instance in FAULT; it reads the file when inotify
// reports it written or moved in), so no process is forked per check: a
// check that had to start the shoal binary and read lb.yaml could miss
// keepalived's 2 s script timeout twice on a loaded machine and fault a
// healthy node (issue 13).
//
//	healthy --fall failures in a row--> unhealthy (file: 1, FAULT)
//	unhealthy --rise passes in a row--> healthy (file: 0)
//
// The file is replaced atomically (atomicfile) and only when the state
// changes; a write that fails is tried again after the next check.

// The check's timing: its interval and keepalived's fall/rise counts.
const (
	vipCheckEvery = time.Second
	vipCheckFall  = 2
	vipCheckRise  = 2
)

// errNoCheckTarget is the check's answer before any owner has told the
// guard its admin API: not counted as a pass or a failure.
var errNoCheckTarget = errors.New("no balancer to check yet")

// vipHealth is the guard's checker of one balancer; see above. The zero
// counts are taken from vipCheckFall/Rise by newVIPHealth. run owns it:
// it is not safe for concurrent use.
type vipHealth struct {
	file  string                          // the track file keepalived watches
	check func(ctx context.Context) error // one check; errNoCheckTarget: none
	every time.Duration
	fall  int
	rise  int
	note  func(msg string) // a line for the guard's owners' logs

	healthy bool
	streak  int // results in a row that disagree with healthy
	written int // the value in the file: 0, 1, or -1 before the first write
}

// newVIPHealth returns a checker that starts healthy (as keepalived's
// track_script did) and has not written file yet.
func newVIPHealth(file string, check func(context.Context) error, note func(string)) *vipHealth {
	return &vipHealth{file: file, check: check, note: note, every: vipCheckEvery,
		fall: vipCheckFall, rise: vipCheckRise, healthy: true, written: -1}
}

// observe counts one check's result and reports whether the state
// changed: fall failures in a row make a healthy balancer unhealthy,
// rise passes in a row an unhealthy one healthy; any result that agrees
// with the state resets the count.
func (h *vipHealth) observe(err error) (changed bool) {
	if (err == nil) == h.healthy {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.fall
	if !h.healthy {
		need = h.rise
	}
	if h.streak < need {
		return false
	}
	h.healthy, h.streak = !h.healthy, 0
	return true
}

// value is the track file's number for the state: 0 healthy, 1 FAULT.
func (h *vipHealth) value() int {
	if h.healthy {
		return 0
	}
	return 1
}

// sync writes the state's value into the track file unless the file
// already holds it.
func (h *vipHealth) sync() error {
	v := h.value()
	if v == h.written {
		return nil
	}
	if err := atomicfile.Write(h.file, fmt.Appendf(nil, "%d\n", v), 0o600); err != nil {
		return fmt.Errorf("balancer check: %w", err)
	}
	h.written = v
	return nil
}

// run checks every interval until ctx ends (a check in progress is cut
// by ctx), and keeps the track file in step with the state. It notes
// each failure, each change of state and each failed write, and calls
// alive after each check (the guard's sign of life to its owners).
func (h *vipHealth) run(ctx context.Context, alive func()) {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errNoCheckTarget) {
			alive()
			continue
		}
		if h.observe(err) {
			if h.healthy {
				h.note(fmt.Sprintf("balancer check passed %d times in a row: healthy (%s = 0)", h.rise, h.file))
			} else {
				h.note(fmt.Sprintf("balancer check failed %d times in a row: FAULT (%s = 1): %v", h.fall, h.file, err))
			}
		} else if err != nil && h.healthy {
			h.note(fmt.Sprintf("balancer check failed (%d of %d before FAULT): %v", h.streak, h.fall, err))
		}
		if err := h.sync(); err != nil {
			h.note(err.Error() + "; tried again after the next check")
		}
		alive()
	}
}

// checkClient is the admin API client of the guard's check of url: a new
// connection per check (no keep-alive), so each check reaches whichever
// process accepts on the admin address, as `shoal lb check` did (after a
// listener handoff, the new process).
func checkClient(url, token string) *client.Client {
	c := client.New(url, token)
	if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
		tr.DisableKeepAlives = true
	}
	return c
}

// checkURL is the URL of an admin API listening on addr (what the guard
// checks): http on the listener's address, loopback when it takes every
// address, or unix: with a socket's path.
func checkURL(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		if a.IP.IsUnspecified() {
			return "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
		}
		return "http://" + a.String()
	case *net.UnixAddr:
		return "unix:" + a.Name
	}
	return "unix:" + addr.String()
}
