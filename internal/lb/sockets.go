package lb

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
)

// Socket is one bound listener's listening socket, as handed to another
// process in a listener upgrade (see ListenOn).
type Socket struct {
	// Name is the listener's name.
	Name string
	// Addr is the listener's configured address (Listener.Addr), not
	// the bound one: the receiving process compares it with its own
	// configuration.
	Addr string
	// File is a new descriptor of the socket (close-on-exec); the caller
	// closes it. The socket keeps listening in this Balancer too.
	File *os.File
}

// Sockets returns a descriptor of every bound listener's socket, sorted
// by name. It is an error while the balancer is not listening or is
// shutting down; on error no file is left open.
func (b *Balancer) Sockets() ([]Socket, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.listening || b.stopping {
		return nil, errors.New("balancer is not listening")
	}
	var out []Socket
	for _, l := range b.listeners {
		tl, ok := l.raw.(*net.TCPListener)
		if !ok {
			closeSockets(out)
			return nil, fmt.Errorf("listener %s: not a TCP socket", l.cfg.Name)
		}
		f, err := tl.File()
		if err != nil {
			closeSockets(out)
			return nil, fmt.Errorf("listener %s: %w", l.cfg.Name, err)
		}
		out = append(out, Socket{Name: l.cfg.Name, Addr: l.cfg.Addr, File: f})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func closeSockets(ss []Socket) {
	for _, s := range ss {
		s.File.Close()
	}
}
