package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/config"
)

// backup serves GET /v1/backup: the whole desired state as one store
// file. In a cluster it runs on the leader (a follower forwards the call,
// adminToLeader) and is cluster.Node.Backup: a Barrier first, so every
// write acknowledged before the call is in it. A server alone copies its
// store. The copy is written to a temporary file in data_dir first (a
// slow client must not hold the store's read transaction open, which
// would stall writes that grow the file), then sent with its
// Content-Length, so a client can tell a cut answer from a whole one; the
// temporary file is removed once sent.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) error {
	tmp, err := os.CreateTemp(s.cfg.DataDir, ".backup-*.db")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if s.cl != nil {
		err = clusterError(s.cl.node.Backup(r.Context(), tmp))
	} else {
		err = s.copyStore(tmp)
	}
	if err != nil {
		return err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	w.Header().Set("Content-Type", api.BackupContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if _, err := io.Copy(w, tmp); err != nil {
		// The status is sent: the client sees a body shorter than its
		// Content-Length.
		s.log.Warn("backup not sent whole", "error", err)
	}
	return nil
}

// copyStore writes a consistent copy of the store of a server alone to w.
func (s *Server) copyStore(w io.Writer) error {
	sn, err := s.st.Snapshot()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer sn.Close()
	if _, err := sn.WriteTo(w); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// RestoreCluster prepares the data_dir of the stopped server of file (the
// server.yaml at path) to start a new cluster of one server, this one,
// whose state is the backup from (GET /v1/backup, `shoal backup --admin`; or a server alone's store
// backup): cluster.Restore, which checks the file and refuses a data_dir
// holding raft state. id and advertise are this server's cluster.id and
// raft address; empty, they are server.yaml's (cluster.advertise, else
// cluster.listen when it names a host and a port). The server must then
// start with that id, listening for raft at that address. It returns the
// id and address used.
func RestoreCluster(path string, file *config.ServerFile, id, advertise, from string) (string, string, error) {
	c := file.Cluster
	if c == nil && (id == "" || advertise == "") {
		return "", "", fmt.Errorf("restore cluster: %s has no cluster section: give the server's --id and --advertise (its raft address), or add the section first", path)
	}
	if id == "" {
		id = c.ID
	}
	if advertise == "" {
		advertise = c.Advertise
	}
	if advertise == "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil || host == "" || port == "0" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			return "", "", fmt.Errorf("restore cluster: cluster.listen %q of %s is not an address the other servers can dial: give --advertise HOST:PORT, the address the server will listen on", c.Listen, path)
		}
		advertise = c.Listen
	}
	if err := cluster.Restore(file.DataDir, id, advertise, from); err != nil {
		return "", "", err
	}
	return id, advertise, nil
}
