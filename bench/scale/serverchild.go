package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/store"
)

// serverEnv names the manifest of a server's process.
const serverEnv = "SCALE_SERVER"

// serverManifest is what a server's process is given: the run's folder
// (the CA, servers/sN, the apps' folders and data dirs), its replica's
// index, the scenario and the hosts to admit to its fleet's port.
type serverManifest struct {
	Dir      string   `json:"dir"`
	Index    int      `json:"index"`
	Scenario scenario `json:"scenario"`
	Hosts    []string `json:"hosts"`
}

// serverSample is a server's counters at one moment, as its process
// reports them (servers.go sums them).
type serverSample struct {
	Passes   histWire `json:"passes"` // every term's of this server
	Events   uint64   `json:"events"` // its store's last event number
	Index    uint64   `json:"index"`  // its raft's last applied entry
	HostPuts int64    `json:"host_puts"`
}

// serverChild is a server's process: one replica (serverSide with only
// its own) that obeys its parent's commands on stdin, one answer line
// each, and tells it unasked when its term begins and ends ("term begins
// N", "term ends N").
type serverChild struct {
	s    *serverSide
	out  sync.Mutex
	peer *store.Store // the write latency's peer, opened at the first write
	prof func()       // stops the CPU profile running
}

// runServer is a server's process: it opens the replica of the manifest
// at path, prints "server ready ID RAFTADDR FLEETURL" (RAFTADDR "-"
// for a server alone), then answers its stdin's commands until it
// ends, and closes the replica (with a cluster the instances keep
// running; a server alone stops them, as `shoal server` does).
func runServer(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m serverManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	c := &serverChild{prof: func() {}}
	sc := m.Scenario
	sc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	sc.OnTerm = func(_ string, n uint64, begun bool) {
		if begun {
			c.say("term begins %d", n)
		} else {
			c.say("term ends %d", n)
		}
	}
	if c.s, err = newServerSide(m.Dir, sc, m.Index); err != nil {
		return err
	}
	defer func() {
		c.prof()
		if c.peer != nil {
			c.peer.Close()
		}
		if cerr := c.s.close(); cerr != nil {
			fmt.Fprintf(os.Stderr, "scale server s%d: %v\n", m.Index, cerr)
		}
	}()
	if err := c.s.admit(m.Hosts); err != nil {
		return err
	}
	r := c.s.replicas[0]
	c.say("server ready %s %s %s", r.id, cmp(r.addr, "-"), c.s.url)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		c.say("%s", c.command(strings.Fields(in.Text())))
	}
	return in.Err()
}

func cmp(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

// say prints one line to the parent.
func (c *serverChild) say(format string, args ...any) {
	c.out.Lock()
	defer c.out.Unlock()
	fmt.Printf(format+"\n", args...)
}

// command runs one of the parent's commands and returns its answer: a
// check answers "ok" or "no WHY"; a failure "err WHY".
func (c *serverChild) command(f []string) string {
	if len(f) == 0 {
		return "err empty command"
	}
	s := c.s
	check := func(err error) string {
		if err != nil {
			return "no " + err.Error()
		}
		return "ok"
	}
	done := func(err error) string {
		if err != nil {
			return "err " + err.Error()
		}
		return "ok"
	}
	switch {
	case f[0] == "add" && len(f) == 3:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return done(s.replicas[0].node.AddVoter(ctx, f[1], f[2]))
	case f[0] == "create":
		return done(s.createApps())
	case f[0] == "isleader":
		if n := s.replicas[0].node; n != nil && n.IsLeader() || n == nil && s.leader() != nil {
			return "yes"
		}
		return "no"
	case f[0] == "hosts":
		return check(s.hostsReady())
	case f[0] == "apps":
		return check(s.appsReady())
	case f[0] == "serving":
		gone := map[string]bool{}
		for _, id := range f[1:] {
			gone[id] = true
		}
		return check(s.serving(gone))
	case f[0] == "hoststate" && len(f) == 3:
		return check(s.hostIn(f[1], api.HostState(f[2])))
	case f[0] == "spread":
		lo, hi := s.spread()
		return fmt.Sprintf("spread %d %d", lo, hi)
	case f[0] == "busiest":
		name, ids := s.busiestHost()
		list := []string{"busiest", name}
		for id := range ids {
			list = append(list, id)
		}
		return strings.Join(list, " ")
	case f[0] == "states":
		return "states " + s.states() + "; " + s.inService()
	case f[0] == "lost":
		return "lost " + s.lostHosts()
	case f[0] == "sample":
		b, _ := json.Marshal(c.sample())
		return "sample " + string(b)
	case f[0] == "events" && len(f) == 3:
		a, err1 := strconv.ParseUint(f[1], 10, 64)
		b, err2 := strconv.ParseUint(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return done(err)
		}
		n, unhealthy, failed, err := eventCounts(s.replicas[0].store, a, b)
		if err != nil {
			return done(err)
		}
		return fmt.Sprintf("events %d %d %d", n, unhealthy, failed)
	case f[0] == "write" && len(f) == 2:
		want, err := strconv.Atoi(f[1])
		if err != nil {
			return done(err)
		}
		return c.write(want)
	case f[0] == "snapshot":
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		took, size, err := s.snapshot(ctx)
		if err != nil {
			return done(err)
		}
		return fmt.Sprintf("snapshot %d %d", took, size)
	case f[0] == "mem":
		h := heapNow()
		return fmt.Sprintf("mem %d %d %d", h.inuse, h.sys, goruntime.NumGoroutine())
	case f[0] == "cpuprofile" && len(f) == 2:
		c.prof()
		c.prof = startCPUProfile(f[1])
		return "ok"
	case f[0] == "cpuprofile":
		c.prof()
		c.prof = func() {}
		return "ok"
	case f[0] == "heapprofile" && len(f) == 2:
		goruntime.GC()
		writeProfile(f[1], "heap")
		return "ok"
	}
	return fmt.Sprintf("err unknown command %q", strings.Join(f, " "))
}

// sample is this server's counters now.
func (c *serverChild) sample() serverSample {
	s := c.s
	r := s.replicas[0]
	sm := serverSample{HostPuts: r.hosts.puts.Load()}
	sm.Events, _ = r.store.LastEventSeq()
	if r.node != nil {
		sm.Index = r.node.AppliedIndex()
	}
	s.mu.Lock()
	passes := s.pastPasses.clone()
	s.mu.Unlock()
	for _, a := range s.appList() {
		passes.addPasses(a)
	}
	sm.Passes = passes.wire()
	return sm
}

// write makes one scale write (SetDesired want) of the latency group
// through this server's writer, then the same on the peer, a store alone
// in this process (as one `shoal server` has), and answers "wrote
// THROUGH ALONE" in nanoseconds; "retry WHY" when this server does not
// lead or lost its leadership meanwhile (the write may be made again on
// the next leader). The group is made on both first, unmeasured.
func (c *serverChild) write(want int) string {
	r := c.s.leader()
	if r == nil {
		return "retry this server runs no term"
	}
	if c.peer == nil {
		peer, err := store.Open(filepath.Join(r.dir, "peer.db"), store.Options{})
		if err != nil {
			return "err the peer: " + err.Error()
		}
		c.peer = peer
	}
	g := api.Group{App: latencyApp, Min: 1, Max: 2, Desired: 1}
	for _, st := range []struct {
		w   store.Writer
		rd  *store.Store
		who string
	}{{r.w, r.store, "the leader"}, {c.peer, c.peer, "the peer"}} {
		if _, ok, err := st.rd.GetGroup(latencyApp); err == nil && ok {
			continue
		}
		if err := st.w.PutGroup(g); err != nil {
			return retryOrErr(fmt.Errorf("latency group on %s: %w", st.who, err))
		}
	}
	t := time.Now()
	if err := r.w.SetDesired(latencyApp, want); err != nil {
		return retryOrErr(err)
	}
	through := time.Since(t)
	t = time.Now()
	if err := c.peer.SetDesired(latencyApp, want); err != nil {
		return "err the peer: " + err.Error()
	}
	return fmt.Sprintf("wrote %d %d", through, time.Since(t))
}

// retryOrErr answers "retry" for a write refused or cut by a change of
// leader, "err" for anything else.
func retryOrErr(err error) string {
	if errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrUnknownOutcome) {
		return "retry " + err.Error()
	}
	return "err " + err.Error()
}
