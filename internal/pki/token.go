package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// DefaultTokenTTL is how long a join token works when made with no
// lifetime.
const DefaultTokenTTL = time.Hour

// A join token is one string of four fields joined by dots:
//
//	shoal-join-v1.<id>.<secret>.<pin>
//
//	id      10 random bytes, base32 (RFC 4648) lower case, no padding: 16 chars
//	secret  32 random bytes, base64url (RFC 4648 §5), no padding: 43 chars
//	pin     the CA pin's SHA-256 as lower-case hex: 64 chars
//
// The id names the server's record of the token; the secret proves the
// token (the server keeps only its SHA-256); the pin lets the joining host
// check the server's CA before it trusts anything the server says. None of
// the alphabets holds a dot.
const tokenPrefix = "shoal-join-v1"

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Refusals of a join token. The server logs which one it was; the joining
// host is told only that the token was refused.
var (
	ErrTokenMalformed = errors.New("join token malformed")
	ErrTokenUnknown   = errors.New("join token unknown")
	ErrTokenSecret    = errors.New("join token secret does not match")
	ErrTokenUsed      = errors.New("join token already used")
	ErrTokenExpired   = errors.New("join token expired")
)

// Token is a join token taken apart. Secret is secret: never log it.
type Token struct {
	ID     string
	Secret []byte
	// Pin is the CA pin, "sha256:<hex>" (CA.Pin).
	Pin string
}

// String is the token's one-string form (see tokenPrefix for its format).
func (t Token) String() string {
	return tokenPrefix + "." + t.ID + "." + base64.RawURLEncoding.EncodeToString(t.Secret) + "." + strings.TrimPrefix(t.Pin, "sha256:")
}

// NewJoinToken makes a join token for a node of role (agent or lb), valid
// for ttl from the CA's clock (DefaultTokenTTL when 0). It returns the
// token string, to hand to the host once, and the record to keep in a
// TokenStore, which holds only a hash of the secret.
func NewJoinToken(ca *CA, role api.NodeRole, ttl time.Duration) (string, api.JoinToken, error) {
	if !role.Valid() {
		return "", api.JoinToken{}, fmt.Errorf("join token: role %q is not agent or lb", role)
	}
	if ttl < 0 {
		return "", api.JoinToken{}, fmt.Errorf("join token: lifetime %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	id := make([]byte, 10)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return "", api.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", api.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	tok := Token{ID: strings.ToLower(idEncoding.EncodeToString(id)), Secret: secret, Pin: ca.Pin()}
	now := ca.now().UTC()
	sum := sha256.Sum256(secret)
	rec := api.JoinToken{ID: tok.ID, SecretHash: sum[:], Role: role, Created: now, Expires: now.Add(ttl)}
	return tok.String(), rec, nil
}

// ParseToken takes a token string apart. Anything but the exact format is
// ErrTokenMalformed; the error never repeats the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<pin>", ErrTokenMalformed, tokenPrefix)
	}
	id, secret, pin := parts[1], parts[2], parts[3]
	if raw, err := idEncoding.DecodeString(strings.ToUpper(id)); err != nil || len(raw) != 10 || strings.ToLower(id) != id {
		return Token{}, fmt.Errorf("%w: the id is not 16 lower-case base32 characters", ErrTokenMalformed)
	}
	sec, err := base64.RawURLEncoding.Strict().DecodeString(secret)
	if err != nil || len(sec) != 32 {
		return Token{}, fmt.Errorf("%w: the secret is not 43 base64url characters", ErrTokenMalformed)
	}
	if raw, err := hex.DecodeString(pin); err != nil || len(raw) != sha256.Size || strings.ToLower(pin) != pin {
		return Token{}, fmt.Errorf("%w: the pin is not 64 lower-case hex characters", ErrTokenMalformed)
	}
	return Token{ID: id, Secret: sec, Pin: "sha256:" + pin}, nil
}

// checkToken decides whether rec lets the holder of secret join at now:
// the secret's hash is compared in constant time, then the record must be
// unused and unexpired.
func checkToken(rec api.JoinToken, secret []byte, now time.Time) error {
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], rec.SecretHash) != 1 {
		return ErrTokenSecret
	}
	if rec.Used {
		return fmt.Errorf("%w (by %s at %s)", ErrTokenUsed, rec.UsedBy, rec.UsedAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(rec.Expires) {
		return fmt.Errorf("%w at %s", ErrTokenExpired, rec.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// TokenStore keeps the records of join tokens (store.Tokens in bbolt).
// Implementations are safe for concurrent use.
type TokenStore interface {
	// Put stores a record, replacing one of the same ID.
	Put(api.JoinToken) error
	// Take atomically reads the record id, calls check with it and, if
	// check returns nil, marks it used by node by. found is false (and
	// err nil) when no such record exists; check's error is returned as
	// it is, and the record is then left unchanged. Of concurrent Takes of
	// one record whose check refuses a used record, one at most succeeds.
	Take(id, by string, check func(api.JoinToken) error) (found bool, err error)
	// List returns every record, used and expired ones included.
	List() ([]api.JoinToken, error)
	// Delete removes a record; removing none is not an error.
	Delete(id string) error
}
