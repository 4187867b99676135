package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// LBStateFile is the file, in a balancer node's data directory, that
// holds the last configuration the node applied, so that a node restarted
// while the server cannot be reached serves it at once. It holds the
// pools' sticky keys: mode 0600 in a 0700 directory.
const LBStateFile = "lb-config.json"

// lbStateSchema is the version of LBStateFile's format.
const lbStateSchema = 1

// lbState is LBStateFile's content: the configuration, where it stands
// in the server's numbering (Epoch, Version), and a SHA-256 of the
// configuration's JSON, so that a file damaged in a way that still parses
// is refused too.
type lbState struct {
	Schema  int             `json:"schema"`
	Server  string          `json:"server"`
	Epoch   string          `json:"epoch"`
	Version uint64          `json:"version"`
	Saved   time.Time       `json:"saved"`
	SHA256  string          `json:"sha256"`
	Config  json.RawMessage `json:"config"`
}

// DamagedStateError is a balancer node's LBStateFile that cannot be read
// back: the node refuses to start rather than serve nothing or guess.
type DamagedStateError struct {
	Path string
	Err  error
}

func (e *DamagedStateError) Error() string {
	return fmt.Sprintf("%s: damaged balancer configuration: %v (move the file away to start with no routes and wait for the server's configuration)", e.Path, e.Err)
}

func (e *DamagedStateError) Unwrap() error { return e.Err }

// saveLBState writes the node's applied configuration to path, atomically
// and durably (atomicfile: temp, fsync, rename, fsync of the directory).
func saveLBState(path, server, epoch string, version uint64, cfg api.LBConfig) error {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	data, err := json.MarshalIndent(lbState{Schema: lbStateSchema, Server: server, Epoch: epoch, Version: version,
		Saved: time.Now().UTC(), SHA256: hex.EncodeToString(sum[:]), Config: raw}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save balancer configuration: %w", err)
	}
	return nil
}

// loadLBState reads path. A missing file is no state (found false, nil);
// anything else that cannot be read back whole is a *DamagedStateError.
func loadLBState(path string) (st lbState, cfg api.LBConfig, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return lbState{}, api.LBConfig{}, false, nil
	}
	if err != nil {
		return lbState{}, api.LBConfig{}, false, fmt.Errorf("read balancer configuration: %w", err)
	}
	damaged := func(format string, args ...any) error {
		return &DamagedStateError{Path: path, Err: fmt.Errorf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return lbState{}, api.LBConfig{}, false, damaged("%v", err)
	}
	if st.Schema != lbStateSchema {
		return lbState{}, api.LBConfig{}, false, damaged("schema %d, want %d", st.Schema, lbStateSchema)
	}
	// The file is indented; the sum is of the compact JSON written.
	var compact bytes.Buffer
	if err := json.Compact(&compact, st.Config); err != nil {
		return lbState{}, api.LBConfig{}, false, damaged("configuration: %v", err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != st.SHA256 {
		return lbState{}, api.LBConfig{}, false, damaged("checksum mismatch: the configuration is not what was written")
	}
	cd := json.NewDecoder(bytes.NewReader(st.Config))
	cd.DisallowUnknownFields()
	if err := cd.Decode(&cfg); err != nil {
		return lbState{}, api.LBConfig{}, false, damaged("configuration: %v", err)
	}
	return st, normalLBConfig(cfg), true, nil
}

// normalLBConfig gives c's nil lists their empty value, as the server
// sends them, so that configurations compare equal whatever path they
// took (JSON leaves an empty list of targets out).
func normalLBConfig(c api.LBConfig) api.LBConfig {
	if c.Routes == nil {
		c.Routes = []api.LBRoute{}
	}
	if c.Pools == nil {
		c.Pools = []api.LBPool{}
	}
	c.Certificates = nilIfEmpty(c.Certificates)
	c.Challenges = nilIfEmpty(c.Challenges)
	for i := range c.Pools {
		if c.Pools[i].Targets == nil {
			c.Pools[i].Targets = []api.LBTarget{}
		}
	}
	return c
}
