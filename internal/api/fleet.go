package api

import "time"

// NodeRole is what a host of the fleet is to the server, recorded in its
// certificate (the subject's organizational unit) by the fleet's CA and
// sent and stored as its name.
type NodeRole string

const (
	// RoleAgent is an app host running `shoal agent` (issue 12).
	RoleAgent NodeRole = "agent"
	// RoleLB is a balancer node (issue 13).
	RoleLB NodeRole = "lb"
	// RoleServer marks the server's own certificate; no join token and no
	// signing request can obtain it.
	RoleServer NodeRole = "server"
)

// Valid reports whether r is a role a node can join as (agent or lb).
func (r NodeRole) Valid() bool { return r == RoleAgent || r == RoleLB }

// JoinToken is the server's record of one join token. It holds a hash of
// the token's secret, never the secret itself, so the record (and a backup
// of the store) cannot be used to join.
type JoinToken struct {
	// ID names the token; it is the token's second field and the store's
	// key.
	ID string
	// SecretHash is the SHA-256 of the token's 32 secret bytes.
	SecretHash []byte
	// Role is the role a node that joins with the token gets.
	Role    NodeRole
	Created time.Time
	// Expires is when the token stops working, used or not.
	Expires time.Time
	// Used is set, with UsedAt and UsedBy (the name of the node that
	// joined), by the one join that consumed the token.
	Used   bool
	UsedAt time.Time
	UsedBy string
}

// JoinRequest is the body of POST /v1/join on the server's fleet port: a
// one-time token, the name the node asks for and a PEM certificate
// signing request made with a key that never leaves the node.
type JoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	CSR   string `json:"csr"`
}

// RenewRequest is the body of POST /v1/renew: a new PEM certificate
// signing request for the name of the client certificate that sends it.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// NodeCertificate answers a join or a renewal: the node's signed
// certificate and the fleet CA's certificate, both PEM.
type NodeCertificate struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}
