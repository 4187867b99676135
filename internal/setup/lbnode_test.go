package setup

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func lbNode(dataDir string) *LBNode {
	return &LBNode{Server: "https://10.0.0.1:7443", DataDir: dataDir, Listeners: []LBListener{
		{Name: "http", Listen: ":80"}, {Name: "https", Listen: ":443", ACME: true}}}
}

// TestSetupLBNode installs a balancer node on a fresh host (every file,
// lb.yaml as shoal lb loads it, the unit checked by systemd-analyze
// verify), runs again and changes nothing, then takes a new binary and a
// new lb.yaml with systemctl reload (the listener handoff) and a changed
// unit with a restart.
func TestSetupLBNode(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	v1, v2 := twoBuilds(t)
	data := t.TempDir() // the node's data dir: the lab sees the test's /tmp

	o := l.options()
	o.LB = lbNode(data)
	o.Token = labToken
	o.Binary = v1
	var out bytes.Buffer
	rep, err := Run(ctx, l.target("root"), o, &out)
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out.String())
	}
	s1, s2 := fileSum(t, v1), fileSum(t, v2)
	checkFile(t, l.path(BinaryPath), 0o755, readFile(t, v1))
	checkFile(t, l.path(LBTokenPath), 0o600, labToken)
	checkFile(t, l.path(LBUnitPath), 0o644, LBUnit)
	checkFile(t, l.path(LBConfigPath), 0o644, "")
	for _, p := range []string{ConfigPath, TokenPath, UnitPath} {
		if _, err := os.Lstat(l.path(p)); err == nil {
			t.Errorf("%s was written for a balancer node", p)
		}
	}
	f, err := config.ParseLB(LBConfigPath, []byte(readFile(t, l.path(LBConfigPath))))
	if err != nil {
		t.Fatalf("written lb.yaml does not load: %v", err)
	}
	want := config.LBServer{URLs: []string{"https://10.0.0.1:7443"}, JoinTokenFile: LBTokenPath, Name: strings.ToLower(labHostname), DataDir: data}
	if f.Server == nil || !reflect.DeepEqual(*f.Server, want) {
		t.Errorf("lb.yaml's server = %+v, want %+v", f.Server, want)
	}
	var listeners []string
	for _, ln := range f.Balancer.Listeners {
		listeners = append(listeners, ln.Name+"="+ln.Addr)
	}
	if !slices.Equal(listeners, []string{"http=:80", "https=:443"}) {
		t.Errorf("lb.yaml's listeners = %q", listeners)
	}
	verifyUnit(t, l, LBUnitPath)
	checkCalls(t, l, "daemon-reload", "enable --now shoal-lb")
	checkOutput(t, "first", &out,
		"binary: installed "+s1[:12]+" (new)",
		"config: written "+LBConfigPath,
		"join token: written "+LBTokenPath,
		"unit: written "+LBUnitPath+", systemd reloaded",
		"service: enabled and started",
	)
	if !rep.Changed() {
		t.Error("report says nothing changed")
	}

	// Again: nothing to do.
	out.Reset()
	if rep, err = Run(ctx, l.target("root"), o, &out); err != nil || rep.Changed() {
		t.Fatalf("second setup: %+v, %v; want nothing changed\n%s", rep, err, out.String())
	}
	if got := l.calls(t); len(got) != 2 {
		t.Errorf("systemctl calls after the second run = %q; want no new ones", got)
	}

	// The node joins, and v2 comes: replaced, then reloaded.
	join(t, data)
	o.Binary, o.Token = v2, ""
	out.Reset()
	if _, err := Run(ctx, l.target("root"), o, &out); err != nil {
		t.Fatalf("setup v2: %v\n%s", err, out.String())
	}
	checkFile(t, l.path(BinaryPath), 0o755, readFile(t, v2))
	checkOutput(t, "v2", &out,
		"binary: installed "+s2[:12]+" (was "+s1[:12]+")",
		"config: unchanged",
		"join token: not needed (the balancer node has joined: "+filepath.Join(data, "pki", "node.crt")+")",
		"unit: unchanged",
		"service: reloaded (binary changed; the new process took over the listeners)",
	)
	checkCalls(t, l, "daemon-reload", "enable --now shoal-lb", "reload shoal-lb")
	checkNoLeftovers(t, l)

	// Another listener: lb.yaml rewritten, reloaded.
	o.LB.Listeners = append(o.LB.Listeners, LBListener{Name: "alt", Listen: ":8080"})
	out.Reset()
	if _, err := Run(ctx, l.target("root"), o, &out); err != nil {
		t.Fatalf("setup with a listener more: %v\n%s", err, out.String())
	}
	if got := lines(out.String()); len(got) != 5 || got[1] != "config: written "+LBConfigPath ||
		got[4] != "service: reloaded (config changed; the new process took over the listeners)" {
		t.Errorf("output with a listener more:\n%s", out.String())
	}

	// A unit edited by hand is written again, and the service restarted:
	// a reload would keep the old unit's settings.
	write(t, l.path(LBUnitPath), 0o644, "[Service]\nExecStart=/bin/true\n")
	out.Reset()
	if _, err := Run(ctx, l.target("root"), o, &out); err != nil {
		t.Fatalf("setup with an edited unit: %v\n%s", err, out.String())
	}
	checkFile(t, l.path(LBUnitPath), 0o644, LBUnit)
	if got := lines(out.String()); len(got) != 5 || got[4] != "service: restarted (unit changed)" {
		t.Errorf("output with an edited unit:\n%s", out.String())
	}
	if got := l.calls(t); !slices.Equal(got[len(got)-3:], []string{"reload shoal-lb", "daemon-reload", "restart shoal-lb"}) {
		t.Errorf("systemctl calls = %q; want a reload for the config, then daemon-reload and restart for the unit", got)
	}
}

// TestSetupLBNodeNeedsToken refuses a node that has not joined and has no
// token, with nothing changed.
func TestSetupLBNodeNeedsToken(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	o := l.options()
	o.LB = lbNode(t.TempDir())
	_, err := Run(ctx, l.target("root"), o, nil)
	if err == nil || !strings.Contains(err.Error(), "the balancer node on "+l.addr()+" has not joined") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v; want a missing join token", err)
	}
	checkNothingWritten(t, l)
}

// TestLBUnitIsTheExample keeps examples/lb/shoal-lb.service the unit setup
// writes, and docs/lb-configuration.md pointing at it.
func TestLBUnitIsTheExample(t *testing.T) {
	example := readFile(t, filepath.Join("..", "..", "examples", "lb", "shoal-lb.service"))
	if body, ok := strings.CutPrefix(LBUnit, "# Written by shoal setup; rerunning shoal setup rewrites it.\n"); !ok || body != example {
		t.Errorf("examples/lb/shoal-lb.service:\n%s\nwant the unit setup writes, without its header:\n%s", example, LBUnit)
	}
}

func TestValidateLB(t *testing.T) {
	if err := ValidateLB(*lbNode("")); err != nil {
		t.Errorf("a good node without a name: %v", err)
	}
	for _, tc := range []struct {
		n    LBNode
		want []string
	}{
		{LBNode{Server: "http://10.0.0.1:7443", Listeners: []LBListener{{Name: "http", Listen: ":80"}}}, []string{LBConfigPath, "server.url"}},
		{LBNode{Server: "https://10.0.0.1:7443"}, []string{LBConfigPath, "listeners"}},
		{LBNode{Server: "https://10.0.0.1:7443", Name: "Bad_Name", Listeners: []LBListener{{Name: "http", Listen: ":80"}}}, []string{"server.name"}},
	} {
		err := ValidateLB(tc.n)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("ValidateLB(%+v) = %v; want an error naming %s", tc.n, err, w)
			}
		}
	}
}

// TestSetupSharedBinary: a host that runs the agent and a balancer node
// runs one binary; a new one installed for either is taken by both (the
// other restarted or reloaded), so that neither keeps running the old
// build after its own setup finds the binary up to date.
func TestSetupSharedBinary(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	v1, v2 := twoBuilds(t)
	agent := l.options()
	agent.Agent = agentConfig()
	agent.Agent.Name = "web-1"
	agent.Token = labToken
	agent.Binary = v1
	if _, err := Run(ctx, l.target("root"), agent, nil); err != nil {
		t.Fatalf("setup the agent: %v", err)
	}

	node := l.options()
	node.LB = lbNode(t.TempDir())
	node.LB.Name = "lb-1"
	node.Token = labToken
	node.Binary = v2
	var out bytes.Buffer
	if _, err := Run(ctx, l.target("root"), node, &out); err != nil {
		t.Fatalf("setup the node with v2: %v\n%s", err, out.String())
	}
	s1, s2 := fileSum(t, v1), fileSum(t, v2)
	checkOutput(t, "node", &out,
		"binary: installed "+s2[:12]+" (was "+s1[:12]+")",
		"config: written "+LBConfigPath,
		"join token: written "+LBTokenPath,
		"unit: written "+LBUnitPath+", systemd reloaded",
		"service: enabled and started",
		"other service: restarted shoal-agent (binary changed; it runs the same file; instances keep running)",
	)
	checkCalls(t, l, "daemon-reload", "enable --now shoal-agent", "daemon-reload", "enable --now shoal-lb", "restart shoal-agent")

	// The agent's setup with v1 again: the agent restarts, the node reloads.
	out.Reset()
	if _, err := Run(ctx, l.target("root"), agent, &out); err != nil {
		t.Fatalf("setup the agent with v1: %v\n%s", err, out.String())
	}
	checkFile(t, l.path(BinaryPath), 0o755, readFile(t, v1))
	if got := lines(out.String()); len(got) != 6 ||
		got[4] != "service: restarted (binary changed; instances keep running)" ||
		got[5] != "other service: reloaded shoal-lb (binary changed; it runs the same file; the new process took over the listeners)" {
		t.Errorf("agent output:\n%s", out.String())
	}
	if got := l.calls(t); !slices.Equal(got[len(got)-2:], []string{"restart shoal-agent", "reload shoal-lb"}) {
		t.Errorf("systemctl calls = %q; want the agent restarted, then the node reloaded", got)
	}

	// Nothing new (both given v1): neither is touched.
	node.Binary = v1
	n := len(l.calls(t))
	for _, o := range []Options{agent, node} {
		if rep, err := Run(ctx, l.target("root"), o, nil); err != nil || !slices.Equal(l.calls(t)[n:], nil) {
			t.Errorf("setup with nothing new: %+v, %v; calls %q", rep, err, l.calls(t)[n:])
		}
	}
}
