package store

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// bucketHosts holds the fleet's hosts, key: host name, value: one
// hostRecord as JSON. Created on first write, like join_tokens, so stores
// written before it existed need no migration.
var bucketHosts = []byte("hosts")

// hostRecordVersion is the version of hostRecord this code writes.
const hostRecordVersion = 1

// hostRecord is the persisted form of api.Host.
type hostRecord struct {
	Version     int       `json:"version"`
	URL         string    `json:"url"`
	Zone        string    `json:"zone,omitempty"`
	Region      string    `json:"region,omitempty"`
	CPU         float64   `json:"cpu,omitempty"`
	MemoryBytes int64     `json:"memory_bytes,omitempty"`
	Epoch       string    `json:"epoch,omitempty"`
	AgentBuild  string    `json:"agent_build,omitempty"`
	Generation  uint64    `json:"generation"`
	Draining    bool      `json:"draining,omitempty"`
	Joined      time.Time `json:"joined"`
	LastHello   time.Time `json:"last_hello,omitzero"`
}

func hostToRecord(h api.Host) hostRecord {
	return hostRecord{Version: hostRecordVersion, URL: h.URL, Zone: h.Zone, Region: h.Region, CPU: h.CPU, MemoryBytes: h.MemoryBytes,
		Epoch: h.Epoch, AgentBuild: h.Version, Generation: h.Generation, Draining: h.Draining,
		Joined: h.Joined.UTC(), LastHello: h.LastHello.UTC()}
}

func decodeHost(name, raw []byte) (api.Host, error) {
	var r hostRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return api.Host{}, fmt.Errorf("%w: host record: %w", errCorrupt, redactJSONError(err))
	}
	if r.Version != hostRecordVersion {
		return api.Host{}, fmt.Errorf("%w: host record version %d, want %d", ErrSchema, r.Version, hostRecordVersion)
	}
	if err := checkHost(string(name), r.CPU, r.MemoryBytes); err != nil {
		return api.Host{}, fmt.Errorf("%w: host record: %w", errCorrupt, err)
	}
	return api.Host{Name: string(name), URL: r.URL, Zone: r.Zone, Region: r.Region, CPU: r.CPU, MemoryBytes: r.MemoryBytes,
		Epoch: r.Epoch, Version: r.AgentBuild, Generation: r.Generation, Draining: r.Draining,
		Joined: r.Joined, LastHello: r.LastHello}, nil
}

func checkHost(name string, cpu float64, mem int64) error {
	switch {
	case name == "":
		return fmt.Errorf("empty host name")
	case cpu < 0 || math.IsNaN(cpu) || math.IsInf(cpu, 0):
		return fmt.Errorf("host %s: CPU %v is not a count of cores", name, cpu)
	case mem < 0:
		return fmt.Errorf("host %s: memory %d is negative", name, mem)
	}
	return nil
}

// Hosts is the store's bucket of the fleet's hosts; it implements
// fleet.HostStore. Its methods are safe for concurrent use.
type Hosts struct{ s *Store }

// Hosts returns the host bucket of s.
func (s *Store) Hosts() *Hosts { return &Hosts{s: s} }

// Put stores h under h.Name, replacing the record of that name. It returns
// ErrInvalid for an empty name or a negative or non-finite capacity.
func (hs *Hosts) Put(h api.Host) error {
	if err := checkHost(h.Name, h.CPU, h.MemoryBytes); err != nil {
		return fmt.Errorf("put host: %w: %w", ErrInvalid, err)
	}
	enc, err := json.Marshal(hostToRecord(h))
	if err != nil {
		return fmt.Errorf("put host %s: %w", h.Name, err)
	}
	err = hs.s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketHosts)
		if err != nil {
			return err
		}
		return b.Put([]byte(h.Name), enc)
	})
	if err != nil {
		return fmt.Errorf("put host %s: %w", h.Name, err)
	}
	return nil
}

// List returns every stored host, sorted by name.
func (hs *Hosts) List() ([]api.Host, error) {
	var out []api.Host
	err := hs.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHosts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			h, err := decodeHost(k, v)
			if err != nil {
				return fmt.Errorf("host %q: %w", k, err)
			}
			out = append(out, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	slices.SortFunc(out, func(a, b api.Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete removes the host name; deleting none is not an error.
func (hs *Hosts) Delete(name string) error {
	err := hs.s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHosts)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete host %s: %w", name, err)
	}
	return nil
}
