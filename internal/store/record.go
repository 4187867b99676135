package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// The persisted forms of schema 1. They change only with SchemaVersion,
// except for optional fields added so that records without them still
// decode and an older Shoal, which ignores unknown JSON fields, still
// reads the new ones (releaseRecord.ServedAt, Config, DeployedEnv); the in-memory types
// (api.Group, api.Release, api.Event) may change freely; each converts to
// and from its record in one function here (decodeX, encodeX).

type groupRecord struct {
	App             string    `json:"app"`
	Release         int       `json:"release"`
	Min             int       `json:"min"`
	Max             int       `json:"max"`
	Desired         int       `json:"desired"`
	AutoscalePaused bool      `json:"autoscale_paused,omitempty"`
	UpdatedAt       time.Time `json:"updated_at"`
}

type envRecord struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

type releaseRecord struct {
	Version           int         `json:"version"`
	App               string      `json:"app"`
	Digest            string      `json:"digest"`
	SourceDigest      string      `json:"source_digest,omitempty"`
	Command           string      `json:"command"`
	Env               []envRecord `json:"env,omitempty"`
	ConfigFingerprint string      `json:"config_fingerprint,omitempty"`
	// CPU and Memory are absent in records written before they existed
	// (and when nothing is declared).
	CPU    float64 `json:"cpu,omitempty"`
	Memory int64   `json:"memory,omitempty"`
	// Runtime and Port are absent for a process release (and in records
	// written before they existed).
	Runtime   string    `json:"runtime,omitempty"`
	Port      int       `json:"port,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Status    string    `json:"status"`
	Change    string    `json:"change,omitempty"`
	Note      string    `json:"note,omitempty"`
	// ServedAt is absent in records written before it existed; they
	// still decode (see Release.HasServed).
	ServedAt time.Time `json:"served_at,omitzero"`
	// Config, ConfigFile and DeployedEnv are what the release was made
	// from (api.Release); absent in records written before they existed,
	// which still decode.
	Config      string      `json:"config,omitempty"`
	ConfigFile  string      `json:"config_file,omitempty"`
	DeployedEnv []envRecord `json:"deployed_env,omitempty"`
}

type eventRecord struct {
	Seq      uint64            `json:"seq"`
	Time     time.Time         `json:"time"`
	App      string            `json:"app,omitempty"`
	Instance string            `json:"instance,omitempty"`
	Release  int               `json:"release,omitempty"`
	Kind     string            `json:"kind"`
	Reason   string            `json:"reason,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func btoi(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// decodeGroup decodes and checks a stored group.
func decodeGroup(b []byte) (api.Group, error) {
	var r groupRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return api.Group{}, fmt.Errorf("decode group: %w: %w", errCorrupt, redactJSONError(err))
	}
	if r.App == "" || r.Min < 0 || r.Max < r.Min || r.Desired < r.Min || r.Desired > r.Max || r.Release < 0 {
		return api.Group{}, fmt.Errorf("decode group: %w: inconsistent record (app %q, min %d, max %d, desired %d, release %d)",
			errCorrupt, r.App, r.Min, r.Max, r.Desired, r.Release)
	}
	return api.Group(r), nil
}

func encodeGroup(g api.Group) ([]byte, error) { return json.Marshal(groupRecord(g)) }

// decodeRelease decodes and checks a stored release. Its errors never
// contain env values.
func decodeRelease(b []byte) (api.Release, error) {
	var r releaseRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return api.Release{}, fmt.Errorf("decode release: %w: %w", errCorrupt, redactJSONError(err))
	}
	if r.Version < 1 || r.App == "" {
		return api.Release{}, fmt.Errorf("decode release: %w: inconsistent record (app %q, version %d)", errCorrupt, r.App, r.Version)
	}
	if !api.ReleaseStatus(r.Status).Valid() {
		return api.Release{}, fmt.Errorf("decode release: %w: unknown status %q", errCorrupt, r.Status)
	}
	if r.CPU < 0 || r.Memory < 0 {
		return api.Release{}, fmt.Errorf("decode release: %w: negative cpu (%v) or memory (%d)", errCorrupt, r.CPU, r.Memory)
	}
	return r.release(), nil
}

// release is the in-memory form of r, unchecked (decodeRelease checks a
// stored record; a command's new release has no version yet).
func (r releaseRecord) release() api.Release {
	rel := api.Release{
		Version: r.Version, App: r.App, Digest: r.Digest, SourceDigest: r.SourceDigest,
		Command: r.Command, CPU: r.CPU, Memory: r.Memory, Runtime: r.Runtime, Port: r.Port, ConfigFingerprint: r.ConfigFingerprint, CreatedAt: r.CreatedAt,
		Status: api.ReleaseStatus(r.Status), Change: r.Change, Note: r.Note, Served: r.ServedAt,
		Config: r.Config, ConfigFile: r.ConfigFile,
	}
	for _, e := range r.Env {
		rel.Env = append(rel.Env, api.EnvVar(e))
	}
	for _, e := range r.DeployedEnv {
		rel.DeployedEnv = append(rel.DeployedEnv, api.EnvVar(e))
	}
	return rel
}

func encodeRelease(rel api.Release) ([]byte, error) { return json.Marshal(releaseToRecord(rel)) }

func releaseToRecord(rel api.Release) releaseRecord {
	r := releaseRecord{
		Runtime: releaseRuntime(rel.Runtime), Port: rel.Port,
		Version: rel.Version, App: rel.App, Digest: rel.Digest, SourceDigest: rel.SourceDigest,
		Command: rel.Command, CPU: rel.CPU, Memory: rel.Memory, ConfigFingerprint: rel.ConfigFingerprint, CreatedAt: rel.CreatedAt,
		Status: string(rel.Status), Change: rel.Change, Note: rel.Note, ServedAt: rel.Served,
		Config: rel.Config, ConfigFile: rel.ConfigFile,
	}
	for _, e := range rel.Env {
		r.Env = append(r.Env, envRecord(e))
	}
	for _, e := range rel.DeployedEnv {
		r.DeployedEnv = append(r.DeployedEnv, envRecord(e))
	}
	return r
}

// redactJSONError keeps the kind of a JSON error but not the text it may
// quote from the record, which can hold secret values.
func redactJSONError(err error) error {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Errorf("invalid JSON at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Errorf("wrong type for field %q at byte %d", e.Field, e.Offset)
	}
	return fmt.Errorf("invalid record")
}

// decodeEvent decodes and checks a stored event: its app and the event.
// The record's kind is the event's Type, its fields "from", "state" and
// "addr" the event's fields of those names.
func decodeEvent(b []byte) (string, api.Event, error) {
	var r eventRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return "", api.Event{}, fmt.Errorf("decode event: %w: %w", errCorrupt, redactJSONError(err))
	}
	if r.Seq == 0 || r.Kind == "" {
		return "", api.Event{}, fmt.Errorf("decode event: %w: inconsistent record (seq %d, kind %q)", errCorrupt, r.Seq, r.Kind)
	}
	return r.App, r.event(), nil
}

// event is the in-memory form of r, unchecked.
func (r eventRecord) event() api.Event {
	return api.Event{Seq: r.Seq, Time: r.Time, Type: r.Kind, Instance: r.Instance, Release: r.Release,
		From: r.Fields["from"], State: r.Fields["state"], Addr: r.Fields["addr"], Reason: r.Reason}
}

// encodeEvent encodes e, an event of app, as decodeEvent reads it.
func encodeEvent(app string, e api.Event) ([]byte, error) { return json.Marshal(eventToRecord(app, e)) }

func eventToRecord(app string, e api.Event) eventRecord {
	r := eventRecord{Seq: e.Seq, Time: e.Time, App: app, Instance: e.Instance, Release: e.Release, Kind: e.Type, Reason: e.Reason}
	for k, v := range map[string]string{"from": e.From, "state": e.State, "addr": e.Addr} {
		if v != "" {
			if r.Fields == nil {
				r.Fields = map[string]string{}
			}
			r.Fields[k] = v
		}
	}
	return r
}

// releaseRuntime is what a release record keeps of its runtime: nothing
// for a process (the default, as in records made before runtimes).
func releaseRuntime(rt string) string {
	if rt == "process" {
		return ""
	}
	return rt
}
