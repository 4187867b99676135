package config

import (
	"strings"
	"testing"
)

type testDoc struct {
	Name  string            `yaml:"name"`
	Count int               `yaml:"count"`
	On    bool              `yaml:"on"`
	Wait  Duration          `yaml:"wait"`
	Max   Size              `yaml:"max"`
	Env   map[string]string `yaml:"env"`
	Items []struct {
		Addr string `yaml:"addr"`
	} `yaml:"items"`
	Inner *struct {
		Min int `yaml:"min"`
	} `yaml:"inner"`
}

func TestDecodeValid(t *testing.T) {
	src := "name: web\ncount: 3\non: true\nwait: 1500ms\nmax: 1MiB\nenv:\n  PORT: 3000\n  A: b\nitems:\n  - addr: x:1\ninner:\n  min: 2\n"
	var v testDoc
	d := decode("t.yaml", []byte(src), &v)
	if len(d.probs) > 0 {
		t.Fatalf("unexpected problems: %v", d.probs)
	}
	if v.Name != "web" || v.Count != 3 || !v.On || v.Wait.D().Milliseconds() != 1500 || v.Max != 1<<20 ||
		v.Env["PORT"] != "3000" || v.Items[0].Addr != "x:1" || v.Inner.Min != 2 {
		t.Fatalf("decoded wrong: %+v", v)
	}
	if p := d.at("items[0].addr"); p != (Pos{10, 11}) {
		t.Fatalf("position of items[0].addr = %v", p)
	}
}

func TestDecodeReportsEveryProblemWithPosition(t *testing.T) {
	src := "name: web\ncount: three\nbogus: 1\nwait: 30\ninner:\n  min: [1]\nname: again\n"
	var v testDoc
	probs := decode("t.yaml", []byte(src), &v).sorted()
	want := []string{
		`t.yaml:2:8: count: expected a whole number, got "three"`,
		`t.yaml:3:1: bogus: unknown key "bogus"`,
		`t.yaml:4:7: wait: a duration needs a unit`,
		`t.yaml:6:8: inner.min: expected a single value, got a list`,
		`t.yaml:7:1: name: duplicate key "name"`,
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(probs), len(want), probs)
	}
	for i, w := range want {
		if !strings.HasPrefix(probs[i].String(), w) {
			t.Errorf("problem %d = %q, want prefix %q", i, probs[i].String(), w)
		}
	}
}

func TestDecodeSyntaxErrorHasLine(t *testing.T) {
	var v testDoc
	probs := decode("t.yaml", []byte("name: web\n  count: 1\n: :\n"), &v).probs
	if len(probs) != 1 || probs[0].Pos.Line == 0 {
		t.Fatalf("want one positioned syntax problem, got %v", probs)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("name: web\ncount: 3\n")
	f.Add("wait: 1 s\n")
	f.Add("items: [{addr: a}, {addr: b}]\nenv: {A: 1}\n")
	f.Add("a: &x {min: 1}\ninner: *x\n")
	f.Add("wait: 5s\nmax: 10KB\n")
	f.Fuzz(func(t *testing.T, src string) {
		var v testDoc
		d := decode("f.yaml", []byte(src), &v)
		for _, p := range d.probs {
			if p.File != "f.yaml" || p.Msg == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
	})
}

func TestDurationWithSpaceSaysRemoveIt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"wait: 1 s\n", `t.yaml:1:7: wait: invalid duration "1 s": remove the space: 1s`},
		{"wait: 1m 30s\n", `t.yaml:1:7: wait: invalid duration "1m 30s": remove the space: 1m30s`},
		{"wait: 1 sec\n", `t.yaml:1:7: wait: invalid duration "1 sec" (use a unit, such as 500ms, 5s or 2m)`},
	} {
		var v testDoc
		probs := decode("t.yaml", []byte(tc.in), &v).sorted()
		if len(probs) != 1 || probs[0].String() != tc.want {
			t.Errorf("%q: problems = %v, want %q", tc.in, probs, tc.want)
		}
	}
}
