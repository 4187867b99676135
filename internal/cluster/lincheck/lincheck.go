// Package lincheck is test support for issue 14's randomized
// linearizability tests, the one model both use: package cluster's
// (nodes in one process) and e2e's (`shoal server` processes in network
// namespaces). It holds the sequential specification of what the
// clients do (a register per app and kind: an app's desired count, and
// the set of names of its env overrides), the history the clients
// record, and the check of that history with
// github.com/anishathalye/porcupine. It imports no Shoal package.
package lincheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kinds of register.
const (
	Desired = "desired" // an app's desired count
	Env     = "env"     // the names of an app's env overrides
)

// Operations on a register.
const (
	Set  = "set"  // Desired: the count becomes N
	Incr = "incr" // Desired: the count grows by one, Output.N the new count
	Add  = "add"  // Env: Name is added to the set
	// Withdraw (Env) takes Name out of the set again: the undo of an
	// addition that failed after it was stored (a `shoal env` whose
	// deploy failed puts the overrides back), recorded with that
	// addition, of unknown outcome as it is.
	Withdraw = "withdraw"
	Read     = "read" // either: Output.N or Output.Names is what was read
)

// Input is one operation a client asked for.
type Input struct {
	App  string
	Kind string // Desired or Env
	Op   string // Set, Incr, Read for Desired; Add, Withdraw, Read for Env
	N    int    // Set: the count
	Name string // Add: the variable
}

// Output is what an operation returned.
type Output struct {
	Unknown bool   // a write whose outcome is unknown: maybe applied
	N       int    // Incr: the new count; Read of Desired: the count
	Names   string // Read of Env: the names, sorted, comma-joined
}

// state is one register's state: a count or a set of names.
type state struct {
	n     int
	names string
}

// JoinNames returns names sorted and comma-joined, as Output.Names holds
// them.
func JoinNames(names []string) string {
	names = slices.Clone(names)
	slices.Sort(names)
	return strings.Join(names, ",")
}

// AddName returns the comma-joined sorted set names with name in it.
func AddName(names, name string) string {
	set := strings.Split(names, ",")
	if names == "" {
		set = nil
	}
	if !slices.Contains(set, name) {
		set = append(set, name)
	}
	return JoinNames(set)
}

// removeName returns the comma-joined sorted set names without name.
func removeName(names, name string) string {
	var kept []string
	for n := range strings.SplitSeq(names, ",") {
		if n != "" && n != name {
			kept = append(kept, n)
		}
	}
	return JoinNames(kept)
}

// Model is the sequential specification: a register per app and kind,
// each checked alone (porcupine's partitions). A write of unknown
// outcome may have happened or not: its return is the end of the
// history, so porcupine may place it anywhere after its call, or after
// every read, and its step accepts any output. A write that may be seen
// and later unseen (applied, then taken back) is recorded with its
// Withdraw, of unknown outcome too.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			in := op.Input.(Input)
			k := in.App + "/" + in.Kind
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return state{} },
	Step: func(st, input, output any) (bool, any) {
		s, in, out := st.(state), input.(Input), output.(Output)
		switch in.Op {
		case Set:
			s.n = in.N
		case Incr:
			if !out.Unknown && out.N != s.n+1 {
				return false, s
			}
			s.n++
		case Add:
			s.names = AddName(s.names, in.Name)
		case Withdraw:
			s.names = removeName(s.names, in.Name)
		case Read:
			if in.Kind == Desired {
				return out.N == s.n, s
			}
			return out.Names == s.names, s
		}
		return true, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		arg := ""
		switch in.Op {
		case Set:
			arg = strconv.Itoa(in.N)
		case Add, Withdraw:
			arg = in.Name
		}
		res := "ok"
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Op == Incr || (in.Op == Read && in.Kind == Desired):
			res = strconv.Itoa(out.N)
		case in.Op == Read:
			res = "[" + out.Names + "]"
		}
		return fmt.Sprintf("%s %s.%s(%s) -> %s", in.App, in.Kind, in.Op, arg, res)
	},
	DescribeState: func(st any) string {
		s := st.(state)
		return fmt.Sprintf("n=%d names=[%s]", s.n, s.names)
	},
}

// History records the clients' operations with their call and return
// times (nanoseconds since it began; a write of unknown outcome returns
// at the end of time). It is safe for concurrent use.
type History struct {
	start    time.Time
	mu       sync.Mutex
	ops      []porcupine.Operation
	acked    []Input // acknowledged env additions
	writes   atomic.Int64
	unknown  atomic.Int64
	progress chan struct{} // signalled after each acknowledged write
}

// NewHistory returns an empty history that begins now.
func NewHistory() *History {
	return &History{start: time.Now(), progress: make(chan struct{}, 1)}
}

// Now is the time of a call, for Record.
func (h *History) Now() int64 { return time.Since(h.start).Nanoseconds() }

// Since is how long ago the history began.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// Record adds client's operation in, called at call (Now), which returned
// out now.
func (h *History) Record(client int, in Input, call int64, out Output) {
	ret := h.Now()
	if out.Unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	if in.Op == Add && !out.Unknown {
		h.acked = append(h.acked, in)
	}
	h.mu.Unlock()
	if in.Op == Read || in.Op == Withdraw {
		return
	}
	if out.Unknown {
		h.unknown.Add(1)
		return
	}
	h.writes.Add(1)
	select {
	case h.progress <- struct{}{}:
	default:
	}
}

// Writes is the number of acknowledged writes.
func (h *History) Writes() int64 { return h.writes.Load() }

// Unknown is the number of writes of unknown outcome.
func (h *History) Unknown() int64 { return h.unknown.Load() }

// Reads is the number of reads recorded.
func (h *History) Reads() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.ops {
		if op.Input.(Input).Op == Read {
			n++
		}
	}
	return n
}

// Len is the number of operations recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// AckedAdds returns the acknowledged env additions.
func (h *History) AckedAdds() []Input {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.acked)
}

// WaitWrites waits until n more writes are acknowledged, for at most d;
// it reports whether they were.
func (h *History) WaitWrites(n int64, d time.Duration) bool {
	target := h.writes.Load() + n
	timer := time.NewTimer(d)
	defer timer.Stop()
	for h.writes.Load() < target {
		select {
		case <-h.progress:
		case <-timer.C:
			return false
		}
	}
	return true
}

// Check runs porcupine over the history, for at most timeout. It returns
// porcupine's verdict and how long it took; unless the verdict is Ok it
// also writes porcupine's visualization of the history to a file in the
// temporary directory named after seed, and names it in err.
func (h *History) Check(seed uint64, timeout time.Duration) (porcupine.CheckResult, time.Duration, error) {
	h.mu.Lock()
	ops := pruneUnseen(h.ops)
	h.mu.Unlock()
	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	took := time.Since(began)
	if res == porcupine.Ok {
		return res, took, nil
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-lin-%d.html", seed))
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return res, took, fmt.Errorf("history is %s (not shown linearizable); its visualization: %w", res, err)
	}
	return res, took, fmt.Errorf("history is %s (not shown linearizable); porcupine's visualization: %s", res, path)
}

// pruneUnseen returns ops without the env additions (and withdrawals)
// of unknown outcome whose name no read returned. The model may place such a write after
// every other operation, where it changes no answer: leaving it out
// checks the same, and spares porcupine a choice per write (whether it
// happened before each read), which grows as two to the number of them.
func pruneUnseen(ops []porcupine.Operation) []porcupine.Operation {
	seen := map[string]bool{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Op == Read && in.Kind == Env {
			for name := range strings.SplitSeq(out.Names, ",") {
				seen[in.App+"/"+name] = true
			}
		}
	}
	kept := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if (in.Op == Add || in.Op == Withdraw) && out.Unknown && !seen[in.App+"/"+in.Name] {
			continue
		}
		kept = append(kept, op)
	}
	return kept
}

// Seed returns the seed of a run: $SHOAL_LIN_SEED when set (replaying a
// run's choices; the timing differs), else a new one.
func Seed() (uint64, error) {
	if s := os.Getenv("SHOAL_LIN_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("SHOAL_LIN_SEED=%q: %w", s, err)
		}
		return seed, nil
	}
	return uint64(time.Now().UnixNano()), nil
}
