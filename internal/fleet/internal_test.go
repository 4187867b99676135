package fleet

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestCheckHelloNamesEveryProblem(t *testing.T) {
	ok := api.AgentHello{URL: "https://10.0.0.5:7443", Zone: "eu-1a", CPU: 2, MemoryBytes: 1 << 30, Epoch: "e1"}
	if err := checkHello(ok); err != nil {
		t.Fatalf("a good hello: %v", err)
	}
	for _, tc := range []struct {
		hi   api.AgentHello
		want []string
	}{
		{api.AgentHello{URL: "https://10.0.0.5", Epoch: "e"}, []string{"want https://host:port"}},
		{api.AgentHello{URL: "https://u@10.0.0.5:1/x?y", Epoch: "e"}, []string{"want https://host:port"}},
		{api.AgentHello{URL: "%zz", Epoch: "e"}, []string{"url"}},
		{api.AgentHello{URL: "https://:7443", Epoch: "e"}, []string{"want https://host:port"}},
		{api.AgentHello{URL: "https://a:1", Zone: "a b", CPU: math.Inf(1), MemoryBytes: -1},
			[]string{"zone", "cpu +Inf", "memory_bytes -1", "epoch"}},
		{api.AgentHello{URL: "https://a:1", Epoch: strings.Repeat("e", 65), Version: strings.Repeat("v", 129)},
			[]string{"epoch", "version: 129"}},
	} {
		err := checkHello(tc.hi)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("checkHello(%+v) = %v, want it to name %q", tc.hi, err, w)
			}
		}
	}
}

func FuzzCheckHello(f *testing.F) {
	f.Add("https://10.0.0.5:7443", "a", 2.0, int64(1<<30), "e1")
	f.Add("http://x", "a b", -1.0, int64(-1), "")
	f.Add("https://[::1]:7443/", "", math.NaN(), int64(0), "e")
	f.Fuzz(func(t *testing.T, url, zone string, cpu float64, mem int64, epoch string) {
		hi := api.AgentHello{URL: url, Zone: zone, CPU: cpu, MemoryBytes: mem, Epoch: epoch}
		if checkHello(hi) == nil && (cpu < 0 || cpu != cpu || mem < 0 || epoch == "" || !strings.HasPrefix(url, "https://")) {
			t.Fatalf("accepted %+v", hi)
		}
	})
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc\n"},
		{"a\nb\n", 5, "a\nb\n"},
		{"a\nb\n", 0, "a\nb\n"},
		{"", 3, ""},
	} {
		if got := lastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestEndedRingKeepsTheNewest(t *testing.T) {
	var r endedRing
	for i := range endedKept + 10 {
		r.add("web-"+strconv.Itoa(i), "h", "tail")
	}
	if len(r.ids) != endedKept || len(r.byID) != endedKept {
		t.Fatalf("ring holds %d ids, %d entries; want %d", len(r.ids), len(r.byID), endedKept)
	}
	if _, ok := r.get(r.ids[0]); !ok {
		t.Fatal("the oldest kept id is not found")
	}
}
