package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
)

// The `shoal lb` side of the listener handoff (handoff.go): its sockets
// are the balancer's listeners, the admin API's (TCP or a Unix socket) and
// the handoff socket, .shoal/handoff.sock next to lb.yaml.

// HandoffSocketPath returns the handoff socket of the balancer that runs
// from the lb.yaml at cfgPath: .shoal/handoff.sock next to it.
func HandoffSocketPath(cfgPath string) string {
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		abs = cfgPath
	}
	return filepath.Join(filepath.Dir(abs), ".shoal", "handoff.sock")
}

// handoffSockets implements handoffOwner: the balancer's listeners and
// the admin API's socket.
func (d *LB) handoffSockets() ([]handoffSocket, []*os.File, error) {
	out, files, err := balancerSockets(d.b)
	if err != nil {
		return nil, nil, err
	}
	admin := []handoffSocket{{Kind: handoffAdmin, Addr: d.adminAddr}}
	af, err := socketFiles(admin, []net.Listener{d.adminLn})
	if err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	return append(out, admin...), append(files, af...), nil
}

// releaseForHandoff implements handoffOwner: a balancer holds nothing a
// second process may not (its new process never asks).
func (d *LB) releaseForHandoff(context.Context) error { return nil }

// handedOver implements handoffOwner: an admin Unix socket the new
// process kept is not unlinked; Run's context ends (the balancer drains).
func (d *LB) handedOver(_ int, kept []handoffSocket) {
	for _, s := range kept {
		if s.Kind == handoffAdmin {
			if ul, ok := d.adminLn.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false)
			}
		}
	}
	d.cancel()
}

// ready waits until the balancer accepts on every listener, then stops
// the old process of a takeover and notifies systemd (notifyServing). If
// Run ends first, an old process serves on.
func (d *LB) ready(ctx context.Context) {
	select {
	case <-d.b.Serving():
	case <-ctx.Done():
		d.inh.close()
		return
	}
	notifyServing(d.inh, d.log)
}
