package api

import "time"

// ClusterMember is the stored record of where one server of a Raft
// cluster serves (issue 14): each server writes its own when it becomes
// the leader, so that the others forward admin calls to its AdminURL and
// send agents and balancer nodes to its FleetURL. No JSON tags: the
// store's record is its own (store/members.go).
type ClusterMember struct {
	// ID is the server's cluster.id (raft's server ID).
	ID string
	// AdminURL is its admin API (http:// on loopback, else https://).
	AdminURL string
	// FleetURL is its fleet listener, where agents and balancer nodes
	// connect.
	FleetURL string
}

// OutcomeHeader, set to OutcomeUnknown on an error answer, says that
// the call may have been carried out all the same: a follower forwarded
// it to a leader that stopped answering after it received the call. A
// deploy's client then follows the deploy (client.Deploy) instead of
// reporting a failure.
const (
	OutcomeHeader  = "Shoal-Outcome"
	OutcomeUnknown = "unknown"
)

// ServerStatus is one server of the cluster as `shoal servers` lists it
// (GET /v1/servers). Address and Voter come from raft's configuration;
// the rest is the server's own view of itself, asked of its admin API
// (Error says why it could not be asked).
type ServerStatus struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	// Role is raft's state: Leader, Follower, Candidate, Shutdown; empty
	// when the server could not be asked.
	Role string `json:"role,omitempty"`
	Term uint64 `json:"term,omitempty"`
	// LastContact is when a follower last heard from the leader (absent
	// on the leader).
	LastContact  time.Time `json:"last_contact,omitzero"`
	AppliedIndex uint64    `json:"applied_index,omitempty"`
	AdminURL     string    `json:"admin_url,omitempty"`
	Error        string    `json:"error,omitempty"`
}

// ServerAddRequest is the body of POST /v1/servers (`shoal servers add
// ID ADDRESS`): a server to add as a voter, by its cluster.id and the
// address of its raft listener (cluster.advertise).
type ServerAddRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// BackupContentType is the media type of GET /v1/backup's answer: the
// whole desired state as one store file (bbolt), what store.Verify checks
// and `shoal restore` reads.
const BackupContentType = "application/vnd.shoal.store"

// ClusterCA is the answer of GET /v1/cluster/ca: the fleet CA every
// server of a cluster shares, certificate and private key in PEM, which
// a server joining the cluster (`shoal server --join`) installs in its
// data_dir before its first start. Only the admin token's holder gets it
// (that holder can already run any code on every host by deploying).
type ClusterCA struct {
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem"`
}
