package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/runtime"
)

// simRuntime is an agent.Runtime whose instances are HTTP listeners in
// this process, on the host's advertise address, instead of processes: a
// health check of one is a real HTTP exchange over a real socket, and
// stopping one closes its listener and reports its exit, as a process that
// ended would. It runs no command and keeps no output. Safe for concurrent
// use.
type simRuntime struct {
	ip    string
	exits chan runtime.Exit

	done chan struct{} // closed by Close

	// starts counts the instances started (a launch; an adoption starts
	// nothing); again those whose id was started before (an instance
	// launched twice).
	starts, again atomic.Int64
	ever          sync.Map // ids ever started

	mu     sync.Mutex
	insts  map[string]*simInstance
	closed bool
	wg     sync.WaitGroup // Serve goroutines and Stops reporting an exit
}

// simInstance is one running simulated instance.
type simInstance struct {
	info   runtime.Info
	srv    *http.Server
	served chan struct{} // closed when Serve returned
}

// simExitBuffer bounds the exits queued before the agent's Run takes them;
// a Stop waits for room beyond it.
const simExitBuffer = 1024

func newSimRuntime(ip string) *simRuntime {
	return &simRuntime{ip: ip, exits: make(chan runtime.Exit, simExitBuffer), done: make(chan struct{}), insts: map[string]*simInstance{}}
}

// simHandler answers every request of a simulated instance with 200 and
// its id, the whole of an instance's work.
func simHandler(id string) http.Handler {
	body := []byte(id + "\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}

// Start implements agent.Runtime: it listens on ip:0 and serves.
func (s *simRuntime) Start(ctx context.Context, spec runtime.Spec) (runtime.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return runtime.Info{}, fmt.Errorf("start %s: %w", spec.ID, runtime.ErrClosed)
	}
	if _, ok := s.insts[spec.ID]; ok {
		return runtime.Info{}, fmt.Errorf("start %s: already running", spec.ID)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.ip, "0"))
	if err != nil {
		return runtime.Info{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	in := &simInstance{
		info: runtime.Info{ID: spec.ID, Port: port, Addr: ln.Addr().String(), Dir: spec.Dir,
			Command: spec.Command, StartedAt: time.Now(), Labels: maps.Clone(spec.Labels)},
		srv:    &http.Server{Handler: simHandler(spec.ID), ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second},
		served: make(chan struct{}),
	}
	s.insts[spec.ID] = in
	s.starts.Add(1)
	if _, seen := s.ever.LoadOrStore(spec.ID, true); seen {
		s.again.Add(1)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(in.served)
		in.srv.Serve(ln)
	}()
	return in.info, nil
}

// Stop implements agent.Runtime: the listener and its connections are
// closed, then the exit is reported (SIGTERM, stopped).
func (s *simRuntime) Stop(ctx context.Context, id string) error {
	s.mu.Lock()
	in := s.insts[id]
	if in == nil {
		s.mu.Unlock()
		return fmt.Errorf("stop %s: %w", id, runtime.ErrNotFound)
	}
	delete(s.insts, id)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	in.srv.Close()
	<-in.served
	x := runtime.Exit{ID: id, Code: -1, Signal: "SIGTERM", Stopped: true, At: time.Now(), Labels: in.info.Labels}
	select {
	case s.exits <- x:
		return nil
	case <-s.done:
		return fmt.Errorf("stop %s: %w", id, runtime.ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get implements agent.Runtime.
func (s *simRuntime) Get(id string) (runtime.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.insts[id]
	if in == nil {
		return runtime.Info{}, fmt.Errorf("%s: %w", id, runtime.ErrNotFound)
	}
	return in.info, nil
}

// List implements agent.Runtime.
func (s *simRuntime) List() []runtime.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]runtime.Info, 0, len(s.insts))
	for _, in := range s.insts {
		out = append(out, in.info)
	}
	return out
}

// Exits implements agent.Runtime.
func (s *simRuntime) Exits() <-chan runtime.Exit { return s.exits }

// Tail implements agent.Runtime: a simulated instance writes no output.
func (s *simRuntime) Tail(ctx context.Context, id string, n int, follow bool, w io.Writer) error {
	if _, err := s.Get(id); err != nil {
		return err
	}
	if follow {
		<-ctx.Done()
	}
	return nil
}

// Stats implements agent.Runtime: a simulated instance uses nothing of
// its own.
func (s *simRuntime) Stats(id string) (runtime.Stats, error) {
	if _, err := s.Get(id); err != nil {
		return runtime.Stats{}, err
	}
	return runtime.Stats{Processes: 1}, nil
}

// Close closes every instance's listener without reporting exits (a host
// that went away: its server learns nothing from it) and closes Exits.
func (s *simRuntime) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	insts := s.insts
	s.insts = map[string]*simInstance{}
	s.mu.Unlock()
	for _, in := range insts {
		in.srv.Close()
	}
	s.wg.Wait()
	close(s.exits)
}
