package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/shoal-dev/shoal/internal/store"
)

// fsm is the Raft state machine: the replica's store. raft calls Apply,
// Snapshot and Restore from one goroutine; Persist and Release from
// another, while Apply goes on.
type fsm struct {
	st  *store.Store
	log *slog.Logger
	// snaps is raft's snapshot store, where Restore finds the index of
	// the snapshot it restores (raft restores the newest).
	snaps raft.SnapshotStore

	// index is the last log entry the store holds: raft's own applied
	// index counts an entry once it is queued for Apply, and drops the
	// queue at shutdown, so it may run ahead of the store (after a
	// start, the store is rebuilt from the log).
	index atomic.Uint64

	mu     sync.Mutex
	broken error // the first command this replica could not read
}

// applied is what fsm.Apply returns for a command: the store's result
// and error, handed to the proposer by the ApplyFuture.
type applied struct {
	result any
	err    error
}

// Apply decodes the command of l and applies it to the store. A command
// the store refuses (ErrInvalid, ErrNotFound, ErrConflict) is refused
// alike on every replica, which all hold the same state, and the error
// goes back to the proposer. A command this replica cannot read (written
// by a newer Shoal) must not be skipped, or the replica would silently
// differ from the others: the fsm stops applying, says so once as an
// error, and Node.Err reports it (the daemon stops; upgrade this server).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	broken := f.broken
	f.mu.Unlock()
	if broken != nil {
		return applied{err: broken}
	}
	c, at, err := store.DecodeCommand(l.Data)
	if err != nil {
		err = fmt.Errorf("raft log entry %d: %w: this server stops applying the log (upgrade it)", l.Index, err)
		f.mu.Lock()
		f.broken = err
		f.mu.Unlock()
		f.log.Error("replica cannot read a committed command", "index", l.Index, "error", err)
		return applied{err: err}
	}
	res, err := f.st.Apply(c, at)
	f.index.Store(l.Index)
	return applied{result: res, err: err}
}

func (f *fsm) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.broken
}

// Snapshot starts a consistent copy of the store; Persist writes it.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.st.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{sn: sn}, nil
}

// Restore replaces the store's content with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.st.ReplaceFrom(rc); err != nil {
		return err
	}
	metas, err := f.snaps.List()
	if err != nil {
		return fmt.Errorf("restore: list snapshots: %w", err)
	}
	if len(metas) > 0 {
		f.index.Store(metas[0].Index)
	}
	return nil
}

type fsmSnapshot struct{ sn *store.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.sn.Close() }
