package cluster

import (
	"errors"
	"fmt"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/store"
)

// Hosts is the fleet's host records of a replicated server (it implements
// fleet.HostStore): writes are commands through the node, reads this
// replica's store.
type Hosts struct{ w Writer }

// Hosts returns the host records written through w.
func (w Writer) Hosts() Hosts { return Hosts{w: w} }

// Put is store.Hosts.Put.
func (h Hosts) Put(host api.Host) error {
	_, err := h.w.apply(store.PutHost{Host: host})
	return err
}

// List is store.Hosts.List, on this replica.
func (h Hosts) List() ([]api.Host, error) { return h.w.Node.Store().Hosts().List() }

// Delete is store.Hosts.Delete.
func (h Hosts) Delete(name string) error {
	_, err := h.w.apply(store.DeleteHost{Name: name})
	return err
}

// Tokens is the join tokens of a replicated server (a pki.TokenStore):
// writes are commands through the node, reads this replica's store.
type Tokens struct{ w Writer }

var _ pki.TokenStore = Tokens{}

// Tokens returns the join tokens written through w.
func (w Writer) Tokens() Tokens { return Tokens{w: w} }

// Put is store.Tokens.Put.
func (t Tokens) Put(tok api.JoinToken) error {
	_, err := t.w.apply(store.PutToken{Token: tok})
	return err
}

// List is store.Tokens.List, on this replica.
func (t Tokens) List() ([]api.JoinToken, error) { return t.w.Node.Store().Tokens().List() }

// Delete is store.Tokens.Delete.
func (t Tokens) Delete(id string) error {
	_, err := t.w.apply(store.DeleteToken{ID: id})
	return err
}

// Take is pki.TokenStore's Take: check runs here on this replica's record
// (it holds the secret's hash check and the expiry), then the take is
// proposed; the log orders concurrent takes, and one that finds the token
// used meanwhile reads it again, so that check (which refuses a used
// token) gives its own answer. At most 8 rounds.
func (t Tokens) Take(id, by string, check func(api.JoinToken) error) (bool, error) {
	for range maxSwaps {
		toks, err := t.List()
		if err != nil {
			return false, err
		}
		i := -1
		for j, tok := range toks {
			if tok.ID == id {
				i = j
			}
		}
		if i < 0 {
			return false, nil
		}
		if err := check(toks[i]); err != nil {
			return true, err
		}
		res, err := t.w.apply(store.TakeToken{ID: id, By: by})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return true, err
		}
		return res.(bool), nil
	}
	return true, fmt.Errorf("take join token %s: %w %d times in a row", id, store.ErrConflict, maxSwaps)
}
