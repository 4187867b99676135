package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Commands (issue 14). Every write to the desired state has a Command: a
// value that names the operation and carries all it needs, so that
// applying one command to equal stores leaves equal stores. Replicas of a
// `shoal server` cluster apply the same commands in the same order
// (internal/cluster carries them through a Raft log); Apply is the one
// place where a command becomes a write.
//
// What a command may not carry is a closure: UpdateGroup's fn runs on the
// proposer, which proposes SwapGroup (the group it read and the group fn
// made of it), and the replicas refuse the swap with ErrConflict when the
// stored group is no longer the one read. A token's check likewise runs
// on the proposer (TakeToken only refuses a used token), and Key's random
// bytes are drawn by the proposer (PutKey keeps a stored key).
//
// Time: the store stamps records (UpdatedAt, CreatedAt, an event's Time,
// a rollout's Updated, a token's UsedAt) with its clock. Under Apply that
// clock is the command's time, chosen once by the proposer, so every
// replica stamps the same instant.
//
// Encoding: EncodeCommand and DecodeCommand, one JSON record per command
// with the command format's version ("v"), the operation ("op") and the
// time ("at"); the domain values inside are the store's own persisted
// records (record.go), so the log and the file share one format. A record
// of an unknown version or operation is refused (ErrSchema): a replica
// never skips a write it cannot read.

// CommandVersion is the version of the command records this code writes
// and reads.
const CommandVersion = 1

// ErrConflict means a SwapGroup (or TakeToken) found the stored value
// changed since the proposer read it: read again and retry.
var ErrConflict = errors.New("changed concurrently")

// A Command is one write to the store; see the comment above. The
// concrete types are the exported structs of this file.
type Command interface {
	// Op names the operation in the encoded record.
	Op() string
}

// PutGroup is Store.PutGroup. Apply returns nil.
type PutGroup struct{ Group api.Group }

// SwapGroup replaces the group Prev (as read by the proposer, UpdatedAt
// included) with Next, checked as UpdateGroup checks its result. Apply
// returns the stored api.Group, or ErrConflict.
type SwapGroup struct{ Prev, Next api.Group }

// SetDesired is Store.SetDesired. Apply returns nil.
type SetDesired struct {
	App     string
	Desired int
}

// PutRelease is Store.PutRelease. Apply returns the stored api.Release.
type PutRelease struct{ Release api.Release }

// SetReleaseStatus is Store.SetReleaseStatus. Apply returns nil.
type SetReleaseStatus struct {
	App     string
	Version int
	Status  api.ReleaseStatus
}

// Activate is Store.Activate. Apply returns nil.
type Activate struct {
	App      string
	Version  int
	Previous api.ReleaseStatus
}

// MarkServed is Store.MarkServed. Apply returns nil.
type MarkServed struct {
	App     string
	Version int
	At      time.Time
}

// PruneReleases is Store.PruneReleases. Apply returns the deleted
// []api.Release.
type PruneReleases struct {
	App     string
	Keep    int
	Protect []int
}

// PutRollout is Store.PutRollout. Apply returns nil.
type PutRollout struct{ Rollout Rollout }

// DeleteRollout is Store.DeleteRollout. Apply returns nil.
type DeleteRollout struct{ App string }

// AppendEvents is Store.AppendEvents. Apply returns the stored
// []api.Event.
type AppendEvents struct {
	App    string
	Events []api.Event
}

// UpdateEnvOverrides is Store.UpdateEnvOverrides. Apply returns the
// overrides afterwards, []api.EnvVar.
type UpdateEnvOverrides struct {
	App   string
	Set   []api.EnvVar
	Unset []string
}

// PutHost is Hosts.Put. Apply returns nil.
type PutHost struct{ Host api.Host }

// DeleteHost is Hosts.Delete. Apply returns nil.
type DeleteHost struct{ Name string }

// PutToken is Tokens.Put. Apply returns nil.
type PutToken struct{ Token api.JoinToken }

// TakeToken marks the join token ID used by By, refusing with
// ErrConflict a token already used (the proposer checked the rest on the
// record it read). Apply returns whether the token exists (bool).
type TakeToken struct{ ID, By string }

// DeleteToken is Tokens.Delete. Apply returns nil.
type DeleteToken struct{ ID string }

// PutMember is Store.PutMember. Apply returns nil.
type PutMember struct{ Member api.ClusterMember }

// PutKey stores Key under Name unless a key of that name exists. Apply
// returns the stored key ([]byte): the existing one, or Key.
type PutKey struct {
	Name string
	Key  []byte
}

func (PutGroup) Op() string           { return "put_group" }
func (SwapGroup) Op() string          { return "swap_group" }
func (SetDesired) Op() string         { return "set_desired" }
func (PutRelease) Op() string         { return "put_release" }
func (SetReleaseStatus) Op() string   { return "set_release_status" }
func (Activate) Op() string           { return "activate" }
func (MarkServed) Op() string         { return "mark_served" }
func (PruneReleases) Op() string      { return "prune_releases" }
func (PutRollout) Op() string         { return "put_rollout" }
func (DeleteRollout) Op() string      { return "delete_rollout" }
func (AppendEvents) Op() string       { return "append_events" }
func (UpdateEnvOverrides) Op() string { return "update_env_overrides" }
func (PutHost) Op() string            { return "put_host" }
func (DeleteHost) Op() string         { return "delete_host" }
func (PutToken) Op() string           { return "put_token" }
func (TakeToken) Op() string          { return "take_token" }
func (DeleteToken) Op() string        { return "delete_token" }
func (PutKey) Op() string             { return "put_key" }
func (PutMember) Op() string          { return "put_member" }

// commandRecord is the persisted form of every command: the fields an
// operation does not use are absent.
type commandRecord struct {
	V        int            `json:"v"`
	Op       string         `json:"op"`
	At       time.Time      `json:"at"`
	App      string         `json:"app,omitempty"`
	Name     string         `json:"name,omitempty"`
	By       string         `json:"by,omitempty"`
	Version  int            `json:"version,omitempty"`
	Status   string         `json:"status,omitempty"`
	N        int            `json:"n,omitempty"`
	Protect  []int          `json:"protect,omitempty"`
	Time     time.Time      `json:"time,omitzero"`
	Group    *groupRecord   `json:"group,omitempty"`
	Prev     *groupRecord   `json:"prev,omitempty"`
	Release  *releaseRecord `json:"release,omitempty"`
	Rollout  *rolloutRecord `json:"rollout,omitempty"`
	Events   []eventRecord  `json:"events,omitempty"`
	Set      []envVarRecord `json:"set,omitempty"`
	Unset    []string       `json:"unset,omitempty"`
	Host     *hostRecord    `json:"host,omitempty"`
	Token    *tokenRecord   `json:"token,omitempty"`
	Bytes    []byte         `json:"bytes,omitempty"`
	Previous string         `json:"previous,omitempty"`
	Member   *memberRecord  `json:"member,omitempty"`
}

// EncodeCommand encodes c, proposed at at, as its record.
func EncodeCommand(c Command, at time.Time) ([]byte, error) {
	r := commandRecord{V: CommandVersion, Op: c.Op(), At: at.UTC()}
	switch c := c.(type) {
	case PutGroup:
		g := groupRecord(c.Group)
		r.Group = &g
	case SwapGroup:
		p, n := groupRecord(c.Prev), groupRecord(c.Next)
		r.Prev, r.Group = &p, &n
	case SetDesired:
		r.App, r.N = c.App, c.Desired
	case PutRelease:
		rel := releaseToRecord(c.Release)
		r.Release = &rel
	case SetReleaseStatus:
		r.App, r.Version, r.Status = c.App, c.Version, string(c.Status)
	case Activate:
		r.App, r.Version, r.Previous = c.App, c.Version, string(c.Previous)
	case MarkServed:
		r.App, r.Version, r.Time = c.App, c.Version, c.At.UTC()
	case PruneReleases:
		r.App, r.N, r.Protect = c.App, c.Keep, c.Protect
	case PutRollout:
		r.App = c.Rollout.App
		r.Rollout = &rolloutRecord{Version: rolloutRecordVersion, Holder: c.Rollout.Holder, By: c.Rollout.By,
			From: c.Rollout.From, To: c.Rollout.To, Started: c.Rollout.Started.UTC(), State: c.Rollout.State}
	case DeleteRollout:
		r.App = c.App
	case AppendEvents:
		r.App = c.App
		r.Events = make([]eventRecord, len(c.Events))
		for i, e := range c.Events {
			r.Events[i] = eventToRecord(c.App, e)
		}
	case UpdateEnvOverrides:
		r.App, r.Unset = c.App, c.Unset
		for _, v := range c.Set {
			r.Set = append(r.Set, envVarRecord(v))
		}
	case PutHost:
		h := hostToRecord(c.Host)
		r.Name, r.Host = c.Host.Name, &h
	case DeleteHost:
		r.Name = c.Name
	case PutToken:
		t := tokenToRecord(c.Token)
		r.Name, r.Token = c.Token.ID, &t
	case TakeToken:
		r.Name, r.By = c.ID, c.By
	case DeleteToken:
		r.Name = c.ID
	case PutKey:
		r.Name, r.Bytes = c.Name, c.Key
	case PutMember:
		r.Name, r.Member = c.Member.ID, &memberRecord{Version: memberRecordVersion, AdminURL: c.Member.AdminURL, FleetURL: c.Member.FleetURL}
	default:
		return nil, fmt.Errorf("encode command: %w: unknown command %T", ErrInvalid, c)
	}
	return json.Marshal(r)
}

// DecodeCommand decodes a record of EncodeCommand: the command and the
// time it was proposed at. A record of another version or an unknown
// operation is an error wrapping ErrSchema; its errors never quote the
// record (it may hold secret values).
func DecodeCommand(b []byte) (Command, time.Time, error) {
	var r commandRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, time.Time{}, fmt.Errorf("decode command: %w: %w", ErrSchema, redactJSONError(err))
	}
	if r.V != CommandVersion {
		return nil, time.Time{}, fmt.Errorf("decode command: %w: command version %d, this Shoal reads %d", ErrSchema, r.V, CommandVersion)
	}
	missing := func(what string) (Command, time.Time, error) {
		return nil, time.Time{}, fmt.Errorf("decode command %s: %w: no %s", r.Op, ErrSchema, what)
	}
	var c Command
	switch r.Op {
	case "put_group":
		if r.Group == nil {
			return missing("group")
		}
		c = PutGroup{Group: api.Group(*r.Group)}
	case "swap_group":
		if r.Group == nil || r.Prev == nil {
			return missing("group")
		}
		c = SwapGroup{Prev: api.Group(*r.Prev), Next: api.Group(*r.Group)}
	case "set_desired":
		c = SetDesired{App: r.App, Desired: r.N}
	case "put_release":
		if r.Release == nil {
			return missing("release")
		}
		c = PutRelease{Release: r.Release.release()}
	case "set_release_status":
		c = SetReleaseStatus{App: r.App, Version: r.Version, Status: api.ReleaseStatus(r.Status)}
	case "activate":
		c = Activate{App: r.App, Version: r.Version, Previous: api.ReleaseStatus(r.Previous)}
	case "mark_served":
		c = MarkServed{App: r.App, Version: r.Version, At: r.Time}
	case "prune_releases":
		c = PruneReleases{App: r.App, Keep: r.N, Protect: r.Protect}
	case "put_rollout":
		if r.Rollout == nil {
			return missing("rollout")
		}
		c = PutRollout{Rollout: Rollout{App: r.App, Holder: r.Rollout.Holder, By: r.Rollout.By, From: r.Rollout.From,
			To: r.Rollout.To, Started: r.Rollout.Started, State: r.Rollout.State}}
	case "delete_rollout":
		c = DeleteRollout{App: r.App}
	case "append_events":
		evs := make([]api.Event, len(r.Events))
		for i, e := range r.Events {
			evs[i] = e.event()
		}
		c = AppendEvents{App: r.App, Events: evs}
	case "update_env_overrides":
		u := UpdateEnvOverrides{App: r.App, Unset: r.Unset}
		for _, v := range r.Set {
			u.Set = append(u.Set, api.EnvVar(v))
		}
		c = u
	case "put_host":
		if r.Host == nil {
			return missing("host")
		}
		enc, err := json.Marshal(r.Host)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("decode command %s: %w", r.Op, err)
		}
		h, err := decodeHost([]byte(r.Name), enc)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("decode command %s: %w", r.Op, err)
		}
		c = PutHost{Host: h}
	case "delete_host":
		c = DeleteHost{Name: r.Name}
	case "put_token":
		if r.Token == nil {
			return missing("token")
		}
		enc, err := json.Marshal(r.Token)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("decode command %s: %w", r.Op, err)
		}
		t, err := decodeToken([]byte(r.Name), enc)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("decode command %s: %w", r.Op, err)
		}
		c = PutToken{Token: t}
	case "take_token":
		c = TakeToken{ID: r.Name, By: r.By}
	case "delete_token":
		c = DeleteToken{ID: r.Name}
	case "put_key":
		c = PutKey{Name: r.Name, Key: r.Bytes}
	case "put_member":
		if r.Member == nil {
			return missing("member")
		}
		c = PutMember{Member: api.ClusterMember{ID: r.Name, AdminURL: r.Member.AdminURL, FleetURL: r.Member.FleetURL}}
	default:
		return nil, time.Time{}, fmt.Errorf("decode command: %w: unknown operation %q", ErrSchema, r.Op)
	}
	return c, r.At, nil
}

// Apply performs c on s as the write method it names does, with the
// store's clock reading at (see the comment at the top of this file), and
// returns the result that method returns (documented on each command
// type). Applies are serialised. A store that a cluster replicates is
// written only through Apply, so that every replica stays equal.
func (s *Store) Apply(c Command, at time.Time) (any, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	at = at.UTC()
	s.applyAt.Store(&at)
	defer s.applyAt.Store(nil)
	switch c := c.(type) {
	case PutGroup:
		return nil, s.PutGroup(c.Group)
	case SwapGroup:
		return s.UpdateGroup(c.Next.App, func(g *api.Group) error {
			if !sameGroup(*g, c.Prev) {
				return fmt.Errorf("group %s: %w", c.Next.App, ErrConflict)
			}
			*g = c.Next
			return nil
		})
	case SetDesired:
		return nil, s.SetDesired(c.App, c.Desired)
	case PutRelease:
		return s.PutRelease(c.Release)
	case SetReleaseStatus:
		return nil, s.SetReleaseStatus(c.App, c.Version, c.Status)
	case Activate:
		return nil, s.Activate(c.App, c.Version, c.Previous)
	case MarkServed:
		return nil, s.MarkServed(c.App, c.Version, c.At)
	case PruneReleases:
		return s.PruneReleases(c.App, c.Keep, c.Protect...)
	case PutRollout:
		return nil, s.PutRollout(c.Rollout)
	case DeleteRollout:
		return nil, s.DeleteRollout(c.App)
	case AppendEvents:
		return s.AppendEvents(c.App, c.Events)
	case UpdateEnvOverrides:
		return s.UpdateEnvOverrides(c.App, c.Set, c.Unset)
	case PutHost:
		return nil, s.Hosts().Put(c.Host)
	case DeleteHost:
		return nil, s.Hosts().Delete(c.Name)
	case PutToken:
		return nil, s.Tokens().Put(c.Token)
	case TakeToken:
		return s.Tokens().Take(c.ID, c.By, func(t api.JoinToken) error {
			if t.Used {
				return fmt.Errorf("join token %s: %w: used by %s", c.ID, ErrConflict, t.UsedBy)
			}
			return nil
		})
	case DeleteToken:
		return nil, s.Tokens().Delete(c.ID)
	case PutKey:
		return s.putKey(c.Name, c.Key)
	case PutMember:
		return nil, s.PutMember(c.Member)
	}
	return nil, fmt.Errorf("apply: %w: unknown command %T", ErrInvalid, c)
}

// sameGroup reports whether a and b are the same stored group (times
// compared as instants).
func sameGroup(a, b api.Group) bool {
	ta, tb := a.UpdatedAt, b.UpdatedAt
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}
