package store

import (
	"testing"
)

// TestRecordsRoundTripUnchanged holds the on-disk format: records as Shoal
// writes them (every field set) decode into the in-memory types of package
// api and encode back to the same bytes, so existing shoal.db files keep
// loading and are rewritten as they were.
func TestRecordsRoundTripUnchanged(t *testing.T) {
	group := `{"app":"web","release":3,"min":1,"max":4,"desired":2,"autoscale_paused":true,"updated_at":"2025-01-02T03:04:05Z"}`
	g, err := decodeGroup([]byte(group))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := encodeGroup(g); string(b) != group {
		t.Errorf("group record changed:\n got %s\nwant %s", b, group)
	}

	release := `{"version":3,"app":"web","digest":"sha256:a","source_digest":"sha256:s","command":"./web",` +
		`"env":[{"name":"A","value":"1"},{"name":"TOKEN","value":"hunter22","secret":true}],` +
		`"config_fingerprint":"f","created_at":"2025-01-02T03:04:05Z","status":"rolled_back","change":"config",` +
		`"note":"n","served_at":"2025-01-02T03:05:05Z","config":"app: web\n","config_file":"/home/ann/web/shoal.yaml",` +
		`"deployed_env":[{"name":"A","value":"0"},{"name":"TOKEN","value":"hunter22","secret":true}]}`
	r, err := decodeRelease([]byte(release))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Env[1].Secret || r.Env[1].Value != "hunter22" || !r.HasServed() || r.Config != "app: web\n" ||
		r.ConfigFile != "/home/ann/web/shoal.yaml" || len(r.DeployedEnv) != 2 || !r.DeployedEnv[1].Secret {
		t.Errorf("release decoded as %+v", r)
	}
	if b, _ := encodeRelease(r); string(b) != release {
		t.Errorf("release record changed:\n got %s\nwant %s", b, release)
	}

	event := `{"seq":7,"time":"2025-01-02T03:04:05Z","app":"web","instance":"web-1","release":3,"kind":"state",` +
		`"reason":"r","fields":{"from":"starting","state":"in_service"}}`
	app, e, err := decodeEvent([]byte(event))
	if err != nil {
		t.Fatal(err)
	}
	if app != "web" || e.Type != "state" || e.From != "starting" || e.State != "in_service" {
		t.Errorf("event decoded as %q %+v", app, e)
	}
	if b, _ := encodeEvent(app, e); string(b) != event {
		t.Errorf("event record changed:\n got %s\nwant %s", b, event)
	}
}
