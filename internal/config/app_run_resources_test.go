package config

import (
	"strings"
	"testing"
)

// TestRunCPUAndMemory: run.cpu and run.memory are read per instance,
// zero when absent, and refused with file:line:col when they cannot be a
// declaration.
func TestRunCPUAndMemory(t *testing.T) {
	tests := []struct {
		name    string
		run     string
		cpu     float64
		memory  Size
		problem string
	}{
		{"absent", "{command: x}", 0, 0, ""},
		{"both", "{command: x, cpu: 0.5, memory: 256MiB}", 0.5, 256 << 20, ""},
		{"whole cores, bytes", "{command: x, cpu: 2, memory: 1000000}", 2, 1000000, ""},
		{"zero declares nothing", "{command: x, cpu: 0, memory: 0}", 0, 0, ""},
		{"negative cpu", "{command: x, cpu: -0.5}", 0, 0,
			"shoal.yaml:2:24: run.cpu: must be a number of cores such as 0.5 (0 declares nothing), got -0.5"},
		{"nan cpu", "{command: x, cpu: .nan}", 0, 0,
			`shoal.yaml:2:24: run.cpu: expected a number, got ".nan"`},
		{"infinite cpu", "{command: x, cpu: .inf}", 0, 0,
			`shoal.yaml:2:24: run.cpu: expected a number, got ".inf"`},
		{"cpu not a number", "{command: x, cpu: half}", 0, 0,
			`shoal.yaml:2:24: run.cpu: expected a number, got "half"`},
		{"memory without a known unit", "{command: x, memory: 2XB}", 0, 0,
			`shoal.yaml:2:27: run.memory: invalid size "2XB" (use bytes or a unit: 64KiB, 1MiB, 10MB)`},
		{"negative memory", "{command: x, memory: -1}", 0, 0,
			`shoal.yaml:2:27: run.memory: invalid size "-1" (use bytes or a unit: 64KiB, 1MiB, 10MB)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse("shoal.yaml", []byte("app: web\nrun: "+tt.run+"\n"), t.TempDir())
			if tt.problem != "" {
				if err == nil || err.Error() != tt.problem {
					t.Fatalf("error:\n got %v\nwant %s", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Run.CPU != tt.cpu || a.Run.Memory != tt.memory {
				t.Errorf("cpu %v memory %d, want %v %d", a.Run.CPU, a.Run.Memory, tt.cpu, tt.memory)
			}
		})
	}
}

// TestFingerprintCoversCPUAndMemory: a change of run.cpu or run.memory is
// a change of the run configuration (a config-only release), and a
// configuration that declares neither keeps the fingerprint releases made
// before they existed recorded.
func TestFingerprintCoversCPUAndMemory(t *testing.T) {
	env := Env{{Name: "A", Value: "1"}}
	a := &App{Run: AppRun{Command: "./web"}}
	// The value of the fingerprint's first form (run.command and env only).
	const before = "sha256:2f0a7ff57383cfa13203657d46ccb7d809c211e50996ff645810884672ae83a8"
	if got := a.Fingerprint(env); got != before {
		t.Fatalf("fingerprint without cpu or memory = %s, want the earlier %s", got, before)
	}
	seen := map[string]string{before: "none"}
	for _, c := range []struct {
		name   string
		cpu    float64
		memory Size
	}{{"cpu 0.5", 0.5, 0}, {"cpu 1", 1, 0}, {"memory 256MiB", 0, 256 << 20}, {"both", 0.5, 256 << 20}, {"memory 1", 0, 1}} {
		b := *a
		b.Run.CPU, b.Run.Memory = c.cpu, c.memory
		fp := b.Fingerprint(env)
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s has the fingerprint of %s", c.name, prev)
		}
		seen[fp] = c.name
	}
	// A variable cannot pose as the declaration: "run.cpu" is no variable
	// name, so no env reproduces the fields.
	if envNameProblem("run.cpu") == "" || !strings.Contains(envNameProblem("run.cpu"), "run.cpu") {
		t.Errorf(`envNameProblem("run.cpu") = %q, want a problem`, envNameProblem("run.cpu"))
	}
}
