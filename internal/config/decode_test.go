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
	Listen string `yaml:"listen" deprecated:"bind"`
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
	f.Add("bind: ':80'\n")
	f.Add("listen: ':80'\nbind: ':81'\n")
	f.Add("bind: a\nbind: b\nlisten: c\n")
	f.Fuzz(func(t *testing.T, src string) {
		var v testDoc
		d := decode("f.yaml", []byte(src), &v)
		for _, p := range append(d.probs, d.warns...) {
			if p.File != "f.yaml" || p.Msg == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		// A deprecated key warns exactly when it was decoded: with no
		// problem, every warning is at a key of the file.
		for _, w := range d.warns {
			if w.Pos.Line < 1 || !strings.HasSuffix(w.Path, "bind") {
				t.Fatalf("warning without position or about another key: %+v", w)
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

// TestDecodeDeprecatedKey: a key's old name (deprecated:"bind") loads the
// same value under the new path, with a warning naming file:line:col and
// the new key; both names at once is an error naming both positions.
func TestDecodeDeprecatedKey(t *testing.T) {
	var neu, old testDoc
	dn := decode("t.yaml", []byte("name: web\nlisten: ':80'\n"), &neu)
	do := decode("t.yaml", []byte("name: web\nbind: ':80'\n"), &old)
	if len(dn.probs)+len(do.probs) > 0 || len(dn.warns) != 0 {
		t.Fatalf("problems %v %v, warnings under the new name %v", dn.probs, do.probs, dn.warns)
	}
	if old.Listen != ":80" || old.Listen != neu.Listen {
		t.Fatalf("old name loaded %q, new name %q", old.Listen, neu.Listen)
	}
	if p := do.at("listen"); p != (Pos{2, 7}) {
		t.Errorf("position of the value under the new path = %v", p)
	}
	want := `t.yaml:2:1: bind: "bind" is a deprecated name: rename it to "listen" (it means the same)`
	if len(do.warns) != 1 || do.warns[0].String() != want {
		t.Errorf("warnings = %v, want %q", do.warns, want)
	}

	for _, tc := range []struct{ src, want string }{
		{"listen: ':80'\nbind: ':81'\n", `t.yaml:2:1: listen: set twice: as "listen" at 1:1 and under its old name "bind" at 2:1; keep "listen" only`},
		{"bind: ':81'\nname: x\nlisten: ':80'\n", `t.yaml:3:1: listen: set twice: as "listen" at 3:1 and under its old name "bind" at 1:1; keep "listen" only`},
		{"bind: a\nbind: b\n", `t.yaml:2:1: listen: duplicate key "bind"`},
	} {
		var v testDoc
		probs := decode("t.yaml", []byte(tc.src), &v).sorted()
		if len(probs) != 1 || probs[0].String() != tc.want {
			t.Errorf("%q: problems = %v, want %q", tc.src, probs, tc.want)
		}
	}
	// The old name is not offered as a known key.
	var v testDoc
	probs := decode("t.yaml", []byte("lisen: x\n"), &v).sorted()
	if len(probs) != 1 || strings.Contains(probs[0].Msg, "bind") || !strings.Contains(probs[0].Msg, "listen") {
		t.Errorf("unknown key: %v", probs)
	}
}
