package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/hostpool"
	"github.com/shoal-dev/shoal/internal/hostpool/dotest"
	"github.com/shoal-dev/shoal/internal/setup"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// doSecret is the fake DigitalOcean API's credential; it must appear in
// no request but the Authorization header, and in no output of the server.
const doSecret = "dop_v1_e2e-secret-7f3a9c0d5b1e"

// doCreateDelay is the fake's time from a droplet's creation to its boot
// (the agent's start), stated in docs/benchmarks.md with the measure.
const doCreateDelay = 2 * time.Second

// droplets boots the fake's droplets on the lab's spare hosts: each runs
// the agent its user-data starts (agent.yaml and the join token taken
// from the script; see dotest.AgentFiles), with the droplet size's
// capacity (1 CPU, 512 MiB) as the agent's.
type droplets struct {
	t     *testing.T
	bin   string
	lab   *testenv.Lab
	mu    sync.Mutex
	free  []string                 // lab hosts not yet used
	proc  map[int]*testenv.Process // by droplet id
	at    map[string]time.Time     // boot time by droplet name
	slot  map[string]string        // lab host by droplet name
	errs  []error
	dud   string   // a droplet whose agent never starts
	ended []string // the output of the destroyed droplets' agents
}

func (d *droplets) boot(_ context.Context, dr godo.Droplet, userData string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fail := func(err error) (string, error) {
		d.errs = append(d.errs, fmt.Errorf("boot %s: %w", dr.Name, err))
		return "", err
	}
	if d.dud != "" && dr.Name == d.dud {
		return "", errors.New("this droplet never boots") // its agent never joins
	}
	if len(d.free) == 0 {
		return fail(errors.New("no lab host left"))
	}
	slot := d.free[0]
	d.free = d.free[1:]
	h := d.lab.Host(slot)
	cfg, tok, err := dotest.AgentFiles(userData)
	if err != nil {
		return fail(err)
	}
	dir := d.t.TempDir()
	cfg = strings.NewReplacer(hostpool.AdvertiseVar, h.IP, setup.TokenPath, filepath.Join(dir, "token"),
		config.DefaultAgentDataDir, filepath.Join(dir, "data")).Replace(cfg)
	var lines []string
	for _, l := range strings.Split(cfg, "\n") {
		if !strings.HasPrefix(l, "cpu:") && !strings.HasPrefix(l, "memory:") {
			lines = append(lines, l)
		}
	}
	cfg = strings.Join(lines, "\n") + "cpu: 1\nmemory: 512MiB\n"
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok+"\n"), 0o600); err != nil {
		return fail(err)
	}
	cmd := d.lab.Command(slot, d.bin, "agent", "-c", filepath.Join(dir, "agent.yaml"))
	cmd.Dir = dir
	p, err := testenv.StartProcess(cmd)
	if err != nil {
		return fail(err)
	}
	d.proc[dr.ID] = p
	d.at[dr.Name] = time.Now()
	d.slot[dr.Name] = slot
	return h.IP, nil
}

// destroyed ends the droplet's agent (its instances were moved off first).
func (d *droplets) destroyed(dr godo.Droplet) {
	d.mu.Lock()
	p := d.proc[dr.ID]
	delete(d.proc, dr.ID)
	d.mu.Unlock()
	if p != nil {
		p.Close()
		d.mu.Lock()
		d.ended = append(d.ended, fmt.Sprintf("droplet %s (%d), destroyed:\n%s", dr.Name, dr.ID, p.Output()))
		d.mu.Unlock()
	}
}

func (d *droplets) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, p := range d.proc {
		p.Close()
		if d.t.Failed() {
			d.t.Logf("output of droplet %d's agent:\n%s", id, p.Output())
		}
	}
	if d.t.Failed() {
		for _, out := range d.ended {
			d.t.Logf("output of the agent of %s", out)
		}
	}
	for _, err := range d.errs {
		d.t.Error(err)
	}
}

// TestHostPool is issue 17's elastic hosts end to end: `shoal server` in
// a lab with a host pool (min 1, max 3, 1 CPU hosts) on a fake
// DigitalOcean API whose droplets boot as lab hosts running the agent
// their user-data starts; examples/goapp declares 0.25 CPU per instance.
//
//  1. The pool makes its one host (min_hosts), web-1, which never boots:
//     after join_deadline it is destroyed and web-2 replaces it; 2
//     instances are deployed.
//  2. Load step: scale to 6. Four instances fit the first host; the others
//     wait for capacity, the pool adds a host (in the other region), and
//     all 6 serve; `shoal hosts` shows each host's region, grouped.
//  3. The load goes away: scale to 1. A host is left empty, drained and
//     destroyed after empty_after; the fleet forgets it.
//  4. Scale to 6 again and kill the server (SIGKILL) as soon as the new
//     droplet is made, before it joins: the restarted server finds it by
//     its tag and creates no duplicate; 6 serve.
//  5. The API rate-limits (429) and fails (500): each failure is a fleet
//     event with its reason, the pool retries with backoff and recovers.
//
// Throughout, the fake checks that the credential is only ever in the
// Authorization header, and the server's output never shows it.
func TestHostPool(t *testing.T) {
	slots := []string{"d1", "d2", "d3", "d4", "d5"}
	f := &fleetLab{t: t, bin: testenv.BuildShoal(t), lab: testenv.NewLab(t, slots...), serverDir: t.TempDir(), agents: map[string]*labAgent{}}
	ds := &droplets{t: t, bin: f.bin, lab: f.lab, free: slots, dud: "web-1", proc: map[int]*testenv.Process{}, at: map[string]time.Time{}, slot: map[string]string{}}
	fake := dotest.New(dotest.Options{Token: doSecret, CreateDelay: doCreateDelay, Boot: ds.boot, Destroyed: ds.destroyed})
	ln, err := f.lab.Listen("", testenv.LabIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	apiURL := fake.Serve(ln)
	t.Cleanup(ds.close)
	t.Cleanup(fake.Close) // before ds.close: no boot runs after
	if err := os.WriteFile(filepath.Join(f.serverDir, "do.token"), []byte(doSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testenv.LabServerConfig() + fmt.Sprintf(`host_pools:
  - name: web
    provider: digitalocean
    token_file: do.token
    api_url: %s
    regions: [nyc1, sfo3]
    size: s-1vcpu-512mb
    image: "424242"
    min_hosts: 1
    max_hosts: 3
    empty_after: 3s
    join_deadline: 15s
    check_every: 500ms
`, apiURL)
	if err := os.WriteFile(filepath.Join(f.serverDir, "server.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startServer()
	servers := []*testenv.Server{f.server}
	t.Cleanup(func() {
		st := fake.Stats()
		if len(st.Leaks) > 0 || st.Unauthorized > 0 {
			t.Errorf("credential checks of the fake API: %+v", st)
		}
		for _, s := range servers {
			if strings.Contains(s.Output(), doSecret) {
				t.Errorf("the server's output shows the API token")
			}
		}
	})
	ready := func(want ...string) error {
		hosts, err := f.hosts()
		if err != nil {
			return err
		}
		var names []string
		for name, h := range hosts {
			if h.State != api.HostReady {
				return fmt.Errorf("host %s is %s (%s)", name, h.State, h.Reason)
			}
			names = append(names, name)
		}
		slices.Sort(names)
		if !slices.Equal(names, want) {
			return fmt.Errorf("hosts %v, want %v", names, want)
		}
		return nil
	}

	// 1. min_hosts: one host; deploy 2 instances on it.
	testenv.Eventually(t, time.Minute, func() error { return ready("web-2") })
	wantEvent(t, f, "destroy web-1 did not join within 15s")
	app := goApp(t, 2)
	yml := filepath.Join(app, "shoal.yaml")
	b, err := os.ReadFile(yml)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(yml, []byte(strings.Replace(string(b), "max: 4", "max: 8", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := f.shoal(app, "deploy"); code != 0 {
		t.Fatalf("shoal deploy: exit %d\n%s\n%s", code, out, errOut)
	}
	testenv.Eventually(t, time.Minute, func() error { _, err := f.serving(app, 2); return err })

	// 2. Load step: 6 instances need 1.5 CPU; the pool adds one host.
	step := time.Now()
	if code, out, errOut := f.shoal(app, "scale", "6"); code != 0 {
		t.Fatalf("shoal scale 6: exit %d\n%s\n%s", code, out, errOut)
	}
	var six []placed
	testenv.Eventually(t, 2*time.Minute, func() (err error) {
		six, err = f.serving(app, 6)
		return err
	})
	took := time.Since(step)
	if err := ready("web-2", "web-3"); err != nil {
		t.Fatal(err)
	}
	// Each host carries its droplet's region; `shoal hosts` groups by it.
	hosts, err := f.hosts()
	if err != nil {
		t.Fatal(err)
	}
	if hosts["web-2"].Region != "nyc1" || hosts["web-3"].Region != "sfo3" {
		t.Errorf("regions: web-2 %q, web-3 %q; want nyc1 and sfo3", hosts["web-2"].Region, hosts["web-3"].Region)
	}
	if code, out, errOut := f.shoal("", "hosts"); code != 0 || !strings.HasPrefix(out, "REGION  HOST") ||
		strings.Index(out, "nyc1    web-2") > strings.Index(out, "sfo3    web-3") {
		t.Errorf("shoal hosts: exit %d\n%s%s", code, out, errOut)
	}
	onNew := 0
	for _, p := range six {
		ds.mu.Lock()
		slot := ds.slot["web-3"]
		ds.mu.Unlock()
		if p.Host == slot {
			onNew++
		}
	}
	if onNew == 0 {
		t.Errorf("no instance on the new host web-3: %+v", six)
	}
	t.Logf("load step: scale 2 -> 6 with 4 instances per host; new host joined and 6 serving in %s (fake creation delay %s)", took.Round(10*time.Millisecond), doCreateDelay)
	wantEvent(t, f, "pool web: add 1 hosts (web-3 in ", "instances wait for capacity")

	// 3. The load goes away: one host is drained, destroyed and forgotten.
	if code, out, errOut := f.shoal(app, "scale", "1"); code != 0 {
		t.Fatalf("shoal scale 1: exit %d\n%s\n%s", code, out, errOut)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if _, err := f.serving(app, 1); err != nil {
			return err
		}
		hosts, err := f.hosts()
		if err != nil {
			return err
		}
		if len(hosts) != 1 || len(fake.Droplets()) != 1 {
			return fmt.Errorf("%d hosts, %d droplets; want 1", len(hosts), len(fake.Droplets()))
		}
		return nil
	})
	wantEvent(t, f, "empty for", "empty_after 3s")
	wantEvent(t, f, "drained and empty")
	left := fake.Droplets()[0].Name
	gone := map[string]string{"web-2": "web-3", "web-3": "web-2"}[left]

	// 4. Scale out again; kill the server once the droplet is made.
	creates := fake.Stats().Creates
	if code, out, errOut := f.shoal(app, "scale", "6"); code != 0 {
		t.Fatalf("shoal scale 6: exit %d\n%s\n%s", code, out, errOut)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if n := fake.Stats().Creates; n == creates {
			return errors.New("no droplet made yet")
		}
		return nil
	})
	if err := f.server.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := f.server.Wait(testenv.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	f.startServer()
	servers = append(servers, f.server)
	testenv.Eventually(t, 2*time.Minute, func() error { _, err := f.serving(app, 6); return err })
	if n := fake.Stats().Creates; n != creates+1 {
		t.Errorf("%d droplets made after the restart, want 1: %v", n-creates, fake.Droplets())
	}
	var names []string
	for _, d := range fake.Droplets() {
		names = append(names, d.Name)
	}
	if len(names) != 2 || !slices.Contains(names, left) || slices.Contains(names, gone) || slices.Contains(names, "web-1") {
		t.Errorf("droplets %v: want %s and a new name (never %s's or web-1's again)", names, left, gone)
	}

	// 5. Rate limits and failures are retried and shown.
	fake.Fail(2, http.StatusTooManyRequests)
	fake.Fail(1, http.StatusInternalServerError)
	testenv.Eventually(t, time.Minute, func() error {
		if fake.Stats().Failed < 3 {
			return errors.New("the failures were not all served yet")
		}
		return nil
	})
	wantEvent(t, f, "rate limited (429)", "retrying in")
	wantEvent(t, f, "500 Internal Server Error")
	wantEvent(t, f, "API answers again after 3 failed attempts")
}

// wantEvent waits for a fleet event (`shoal hosts events -o json`) whose
// reason holds every part.
func wantEvent(t *testing.T, f *fleetLab, parts ...string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		code, out, errOut := f.shoal("", "hosts", "events", "-o", "json", "--limit", "1000")
		if code != 0 {
			return fmt.Errorf("shoal hosts events: exit %d: %s", code, errOut)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var ev api.Event
			if err := dec.Decode(&ev); err != nil {
				return fmt.Errorf("shoal hosts events -o json: %v", err)
			}
			all := true
			for _, p := range parts {
				all = all && strings.Contains(ev.Reason, p)
			}
			if all {
				return nil
			}
		}
		return fmt.Errorf("no fleet event with %q", parts)
	})
}
