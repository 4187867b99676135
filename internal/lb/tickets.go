package lb

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

const (
	// ticketLifetime is how long a TLS session ticket resumes a session
	// (HAProxy's 2 hours; crypto/tls alone allows 7 days).
	ticketLifetime = 2 * time.Hour
	// ticketRotation is how often a new ticket key starts encrypting; the
	// older keys still decrypt while a ticket they sealed can be alive.
	ticketRotation = time.Hour
)

// ticketStampTag marks this package's entry in tls.SessionState.Extra:
// the tag, then the ticket's issue time (unix nanoseconds, big endian).
const ticketStampTag = "shoal/ticket-issued/v1:"

// ticketKeys seals and opens the TLS session tickets of every TLS listener
// of a balancer (all its event loops and reloads share one), so a client
// resumes whichever listener or loop it reaches. Each ticket carries its
// issue time inside the sealed state: a ticket older than lifetime is
// refused (the client makes a full handshake), however long its key is
// kept. A new key is made every rotation period; the keys that may still
// open a live ticket are kept, newest first.
//
// The keys are in one place so that balancer nodes could later share them
// (the server would hand them out through the config stream, and each node
// would install them here instead of making its own); that is not built.
type ticketKeys struct {
	now      func() time.Time
	lifetime time.Duration
	rotation time.Duration

	mu      sync.Mutex
	keys    []ticketKey // newest first
	holder  *tls.Config // holds keys for EncryptTicket/DecryptTicket only
	rotated time.Time   // when keys[0] was made
}

type ticketKey struct {
	key  [32]byte
	made time.Time
}

// newTicketKeys returns a key set with its first key; now nil means
// time.Now.
func newTicketKeys(now func() time.Time) *ticketKeys {
	if now == nil {
		now = time.Now
	}
	return &ticketKeys{now: now, lifetime: ticketLifetime, rotation: ticketRotation, holder: &tls.Config{}}
}

// install makes c seal and open session tickets with k.
func (k *ticketKeys) install(c *tls.Config) {
	c.WrapSession = k.wrap
	c.UnwrapSession = k.unwrap
}

// current rotates the keys when due and returns the key holder and now.
func (k *ticketKeys) current() (*tls.Config, time.Time, error) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) > 0 && now.Sub(k.rotated) < k.rotation && !now.Before(k.rotated) {
		return k.holder, now, nil
	}
	var nk ticketKey
	if _, err := rand.Read(nk.key[:]); err != nil {
		return nil, now, fmt.Errorf("session ticket key: %w", err)
	}
	nk.made = now
	// A key stopped sealing when the next was made; a ticket it sealed
	// lives for lifetime after that at most.
	keep := []ticketKey{nk}
	for i, old := range k.keys {
		retired := now
		if i > 0 {
			retired = k.keys[i-1].made
		}
		if now.Sub(retired) < k.lifetime {
			keep = append(keep, old)
		}
	}
	raw := make([][32]byte, len(keep))
	for i := range keep {
		raw[i] = keep[i].key
	}
	k.holder.SetSessionTicketKeys(raw)
	k.keys, k.rotated = keep, now
	return k.holder, now, nil
}

// wrap is tls.Config.WrapSession: it stamps the issue time into the state
// and seals it with the newest key.
func (k *ticketKeys) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	holder, now, err := k.current()
	if err != nil {
		return nil, err
	}
	stamp := make([]byte, len(ticketStampTag)+8)
	copy(stamp, ticketStampTag)
	binary.BigEndian.PutUint64(stamp[len(ticketStampTag):], uint64(now.UnixNano()))
	// A stamp carried over from an earlier ticket is dropped: the lifetime
	// counts from this issue.
	extra := ss.Extra[:0:0]
	for _, e := range ss.Extra {
		if !isTicketStamp(e) {
			extra = append(extra, e)
		}
	}
	ss.Extra = append(extra, stamp)
	return holder.EncryptTicket(cs, ss)
}

// unwrap is tls.Config.UnwrapSession: a ticket that no kept key opens,
// that has no stamp, or that is older than lifetime resumes nothing.
func (k *ticketKeys) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	holder, now, err := k.current()
	if err != nil {
		return nil, nil // a full handshake instead
	}
	ss, err := holder.DecryptTicket(identity, cs)
	if err != nil || ss == nil {
		return nil, nil
	}
	for _, e := range ss.Extra {
		if isTicketStamp(e) {
			issued := time.Unix(0, int64(binary.BigEndian.Uint64(e[len(ticketStampTag):])))
			if age := now.Sub(issued); age >= 0 && age < k.lifetime {
				return ss, nil
			}
			return nil, nil
		}
	}
	return nil, nil
}

func isTicketStamp(e []byte) bool {
	return len(e) == len(ticketStampTag)+8 && string(e[:len(ticketStampTag)]) == ticketStampTag
}
