package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/shoal-dev/shoal/internal/store"
)

// Backup writes the whole cluster's state to w, as one store file
// (store.Snapshot's format: what store.Verify checks and Restore reads).
// It is for the leader (another node returns a *NotLeaderError): a
// Barrier first, so every write acknowledged anywhere before the call is
// in the copy, then one read transaction of this replica's store, taken
// between two applied commands. Writes go on meanwhile; the store cannot
// grow its memory map until the copy is written, so give it a w that does
// not stall (a file, not a slow client). On error w may hold part of a
// copy: write to a temporary file and rename it once Backup returns nil.
func (n *Node) Backup(ctx context.Context, w io.Writer) error {
	if err := n.Barrier(ctx); err != nil {
		return fmt.Errorf("backup cluster: %w", err)
	}
	sn, err := n.cfg.Store.Snapshot()
	if err != nil {
		return fmt.Errorf("backup cluster: %w", err)
	}
	defer sn.Close()
	if _, err := sn.WriteTo(w); err != nil {
		return fmt.Errorf("backup cluster: %w", err)
	}
	return nil
}

// Restore prepares dataDir to start a new cluster whose state is the
// backup file's (written by Node.Backup, or a single server's store
// backup): it checks the file (store.Verify; a damaged one is refused by
// name and nothing is written), and writes it as raft's first snapshot in
// dataDir/raft/snapshots, with a configuration of one voter, id at
// advertise. The next Open of that data dir, with the same ID and
// Advertise (Bootstrap or not), restores it into the store and leads a
// cluster of one; the other servers start with empty data dirs and are
// added by the leader (Node.AddVoter), which sends them the snapshot.
//
// It refuses a dataDir whose raft directory holds anything: a restore
// makes a new cluster and never merges into an old one's log. Run it while
// no node uses dataDir.
func Restore(dataDir, id, advertise, backupFile string) error {
	if id == "" || advertise == "" {
		return errors.New("restore cluster: the server's id and advertise address are required")
	}
	if _, err := store.Verify(backupFile); err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	dir := filepath.Join(dataDir, "raft")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore cluster: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("restore cluster: %s already holds raft state (%s): a restore starts a new cluster in an empty data dir; move it aside first", dir, entries[0].Name())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	in, err := os.Open(backupFile)
	if err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	defer in.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	// The snapshot's metadata encodes the voters with a transport's
	// EncodePeer (an address's bytes, for every transport); an in-memory
	// one serves without a socket.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(advertise))
	defer trans.Close()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(advertise)}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	if _, err := io.Copy(sink, in); err != nil {
		sink.Cancel()
		return fmt.Errorf("restore cluster: copy %s: %w", backupFile, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("restore cluster: %w", err)
	}
	return nil
}
