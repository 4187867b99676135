package pki

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// NodeState is what the server knows of a node name.
type NodeState int

const (
	// NodeUnknown: no node of that name ever joined (or it was forgotten).
	NodeUnknown NodeState = iota
	// NodeActive: the node joined and was not removed.
	NodeActive
	// NodeRemoved: the operator removed the node; its certificate, though
	// still valid until it expires, opens nothing.
	NodeRemoved
)

func (s NodeState) String() string {
	switch s {
	case NodeUnknown:
		return "unknown"
	case NodeActive:
		return "active"
	case NodeRemoved:
		return "removed"
	}
	return fmt.Sprintf("NodeState(%d)", int(s))
}

// ErrNameTaken refuses a join for a name that a node has (or had: a
// removed node's name stays taken until the operator forgets it).
var ErrNameTaken = errors.New("node name already taken")

// Nodes is the server's allow-list of nodes. Implementations are safe for
// concurrent use.
type Nodes interface {
	// State returns what is known of the node name.
	State(name string) NodeState
	// Admit records that the node id has joined. It returns an error
	// wrapping ErrNameTaken if the name is not NodeUnknown (checked and
	// recorded atomically).
	Admit(id Identity) error
}

// MemNodes is a Nodes in memory, for tests and until the server stores
// its nodes. The zero value is empty and ready.
type MemNodes struct {
	mu    sync.Mutex
	nodes map[string]NodeState
}

// State implements Nodes.
func (m *MemNodes) State(name string) NodeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[name]
}

// Admit implements Nodes.
func (m *MemNodes) Admit(id Identity) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.nodes[id.Name]; st != NodeUnknown {
		return fmt.Errorf("%w: %s is %s", ErrNameTaken, id.Name, st)
	}
	if m.nodes == nil {
		m.nodes = make(map[string]NodeState)
	}
	m.nodes[id.Name] = NodeActive
	return nil
}

// Remove marks the node name removed.
func (m *MemNodes) Remove(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nodes == nil {
		m.nodes = make(map[string]NodeState)
	}
	m.nodes[name] = NodeRemoved
}

// ServerTLSConfig returns the TLS configuration of the server's fleet
// listener: TLS 1.3, a certificate from ca for names (issued now, and
// issued again at two thirds of its DefaultServerTTL lifetime as
// handshakes come), and client certificates verified against ca when
// given (tls.VerifyClientCertIfGiven), so that /v1/join works without one
// and a certificate that is expired or from another CA fails the
// handshake. Authorisation is RequireNode's.
func ServerTLSConfig(ca *CA, names []string) (*tls.Config, error) {
	first, err := ca.IssueServer(names, 0)
	if err != nil {
		return nil, err
	}
	sc := &serverCert{ca: ca, names: slices.Clone(names), cert: &first}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      ca.pool,
		Time:           ca.now,
		GetCertificate: sc.get,
	}, nil
}

// ServerClientTLSConfig returns the TLS configuration with which the
// server calls its nodes (the agents' APIs): TLS 1.3, the CA as the only
// root, and a client certificate of role server from ca, issued now and
// issued again at two thirds of its DefaultServerTTL lifetime as
// handshakes come, so a long-running server never presents an expired
// one. Callers set ServerName (a clone per node).
func ServerClientTLSConfig(ca *CA) (*tls.Config, error) {
	first, err := ca.IssueServer([]string{"shoal-server"}, 0)
	if err != nil {
		return nil, err
	}
	sc := &serverCert{ca: ca, names: []string{"shoal-server"}, cert: &first}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    ca.pool,
		Time:       ca.now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return sc.get(nil)
		},
	}, nil
}

// serverCert holds the server listener's certificate and re-issues it.
type serverCert struct {
	ca    *CA
	names []string
	mu    sync.Mutex
	cert  *tls.Certificate
}

func (sc *serverCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ca.now().Before(renewAt(sc.cert.Leaf)) {
		return sc.cert, nil
	}
	c, err := sc.ca.IssueServer(sc.names, 0)
	if err != nil {
		// IssueServer fails only when the CA has expired (or the system's
		// randomness failed): the old certificate serves while it is valid.
		if sc.ca.now().Before(sc.cert.Leaf.NotAfter) {
			return sc.cert, nil
		}
		return nil, fmt.Errorf("fleet listener certificate expired and cannot be re-issued: %w", err)
	}
	sc.cert = &c
	return sc.cert, nil
}

// ServerConfig configures NewServer.
type ServerConfig struct {
	// CA signs the nodes' certificates; its clock is the server's.
	CA *CA
	// Tokens holds the join tokens' records.
	Tokens TokenStore
	// Nodes is the allow-list: joins are recorded there, and removed
	// nodes are refused.
	Nodes Nodes
	// NodeTTL is the lifetime of the certificates signed at join and
	// renewal; 0 means DefaultNodeTTL.
	NodeTTL time.Duration
	// Logger receives one line per join and renewal, and the reason of
	// every refusal; nil discards.
	Logger *slog.Logger
}

// Server serves the fleet's join protocol (ServeHTTP: POST /v1/join and
// POST /v1/renew) and guards the fleet's other endpoints (RequireNode). It
// is safe for concurrent use.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	mux *http.ServeMux
}

// maxBody bounds a join or renewal request body.
const maxBody = 64 << 10

// NewServer checks cfg and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.CA == nil || cfg.Tokens == nil || cfg.Nodes == nil {
		return nil, errors.New("pki server: CA, Tokens and Nodes are required")
	}
	if cfg.NodeTTL < 0 {
		return nil, fmt.Errorf("pki server: node lifetime %s is negative", cfg.NodeTTL)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("POST /v1/join", s.join)
	s.mux.Handle("POST /v1/renew", s.RequireNode(api.RoleAgent, api.RoleLB)(http.HandlerFunc(s.renew)))
	return s, nil
}

// NewToken makes a join token for role valid for ttl (NewJoinToken) and
// stores its record. It returns the token string, shown once.
func (s *Server) NewToken(role api.NodeRole, ttl time.Duration) (string, api.JoinToken, error) {
	tok, rec, err := NewJoinToken(s.cfg.CA, role, ttl)
	if err != nil {
		return "", api.JoinToken{}, err
	}
	if err := s.cfg.Tokens.Put(rec); err != nil {
		return "", api.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	return tok, rec, nil
}

// ServeHTTP serves POST /v1/join (no client certificate needed) and POST
// /v1/renew (behind RequireNode for agents and balancer nodes). Errors
// answer with an api.ErrorBody.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// tokenRefused is the one answer to every refused token: the joining host
// is not told whether the token was unknown, used, expired or malformed.
const tokenRefused = "join refused: the token is not valid (it may be unknown, used, expired or mistyped); ask the operator for a new one"

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	remote := r.RemoteAddr
	tok, err := ParseToken(req.Token)
	if err != nil {
		s.log.Warn("join refused", "remote", remote, "node", req.Name, "error", err)
		writeError(w, http.StatusUnauthorized, tokenRefused)
		return
	}
	if err := CheckName(req.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := parseCSR([]byte(req.CSR)); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if tok.Pin != s.cfg.CA.Pin() {
		s.log.Warn("join refused: the token names another CA", "remote", remote, "node", req.Name, "token", tok.ID, "pin", tok.Pin)
		writeError(w, http.StatusUnauthorized, tokenRefused)
		return
	}
	var role api.NodeRole
	found, err := s.cfg.Tokens.Take(tok.ID, req.Name, func(rec api.JoinToken) error {
		if err := checkToken(rec, tok.Secret, s.cfg.CA.now()); err != nil {
			return err
		}
		if st := s.cfg.Nodes.State(req.Name); st != NodeUnknown {
			return fmt.Errorf("%w: %s is %s", ErrNameTaken, req.Name, st)
		}
		role = rec.Role
		return nil
	})
	if !found && err == nil {
		err = ErrTokenUnknown
	}
	switch {
	case errors.Is(err, ErrNameTaken):
		s.log.Warn("join refused", "remote", remote, "node", req.Name, "token", tok.ID, "error", err)
		writeError(w, http.StatusConflict, fmt.Sprintf("join refused: the name %s is taken; choose another (the token was not used)", req.Name))
		return
	case errors.Is(err, ErrTokenUnknown), errors.Is(err, ErrTokenSecret), errors.Is(err, ErrTokenUsed), errors.Is(err, ErrTokenExpired):
		s.log.Warn("join refused", "remote", remote, "node", req.Name, "token", tok.ID, "error", err)
		writeError(w, http.StatusUnauthorized, tokenRefused)
		return
	case err != nil:
		s.log.Error("join failed", "remote", remote, "node", req.Name, "token", tok.ID, "error", err)
		writeError(w, http.StatusInternalServerError, "join failed on the server; see its log")
		return
	}
	id := Identity{Name: req.Name, Role: role}
	if err := s.cfg.Nodes.Admit(id); err != nil {
		// Another join took the name since the check above: this token is
		// spent, as a token is once it has been accepted.
		s.log.Warn("join refused after the token was used", "remote", remote, "node", req.Name, "token", tok.ID, "error", err)
		writeError(w, http.StatusConflict, fmt.Sprintf("join refused: the name %s was taken by another join meanwhile", req.Name))
		return
	}
	cert, err := s.cfg.CA.SignCSR([]byte(req.CSR), id, s.cfg.NodeTTL)
	if err != nil {
		s.log.Error("join failed", "remote", remote, "node", req.Name, "token", tok.ID, "error", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("node joined", "node", id.Name, "role", id.Role, "remote", remote, "token", tok.ID)
	writeJSON(w, api.NodeCertificate{Certificate: string(cert), CA: string(s.cfg.CA.certPEM)})
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	id, _ := NodeFrom(r.Context())
	var req api.RenewRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cert, err := s.cfg.CA.SignCSR([]byte(req.CSR), id, s.cfg.NodeTTL)
	if err != nil {
		s.log.Warn("renewal refused", "node", id.Name, "error", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("node certificate renewed", "node", id.Name, "role", id.Role)
	writeJSON(w, api.NodeCertificate{Certificate: string(cert), CA: string(s.cfg.CA.certPEM)})
}

type identityKey struct{}

// NodeFrom returns the identity of the node that sent a request passed by
// RequireNode.
func NodeFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ErrNoClientCertificate is PeerIdentity's error for a request that came
// without a client certificate verified against the fleet's CA.
var ErrNoClientCertificate = errors.New("no verified client certificate")

// PeerIdentity returns the identity in the verified client certificate of
// r: ErrNoClientCertificate when there is none (answer 401), another error
// when the certificate names no valid identity (answer 403). It checks
// neither the role nor whether the node was removed; RequireNode does.
func PeerIdentity(r *http.Request) (Identity, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoClientCertificate
	}
	return IdentityOf(r.TLS.VerifiedChains[0][0])
}

// RequireNode returns a middleware that lets a request through only from a
// node: a client certificate verified at the handshake (else 401), of an
// active node (else 403: removed or unknown) whose role is one of roles
// (else 403; no roles: any node role). The handler finds the node with
// NodeFrom. The connection must come through a listener configured by
// ServerTLSConfig.
func (s *Server) RequireNode(roles ...api.NodeRole) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := PeerIdentity(r)
			if errors.Is(err, ErrNoClientCertificate) {
				writeError(w, http.StatusUnauthorized, "a client certificate of the fleet is required")
				return
			}
			if err == nil && !id.Role.Valid() {
				err = fmt.Errorf("role %s is not a node's", id.Role)
			}
			if err == nil && len(roles) > 0 && !slices.Contains(roles, id.Role) {
				err = fmt.Errorf("role %s may not call %s", id.Role, r.URL.Path)
			}
			if err == nil {
				if st := s.cfg.Nodes.State(id.Name); st != NodeActive {
					err = fmt.Errorf("node %s is %s", id.Name, st)
				}
			}
			if err != nil {
				s.log.Warn("node refused", "node", id.Name, "path", r.URL.Path, "error", err)
				writeError(w, http.StatusForbidden, "forbidden: "+err.Error())
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
		})
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	if dec.More() {
		return errors.New("bad request body: data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: msg})
}

// Names returns the names of every node recorded, active or removed.
func (m *MemNodes) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.nodes))
	for n := range m.nodes {
		out = append(out, n)
	}
	return out
}
