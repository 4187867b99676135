// Package config owns Shoal's file formats, shoal.yaml (an app) and lb.yaml
// (a standalone balancer): the types with their operator documentation,
// defaults, strict decoding and validation.
//
// Decoding is strict: unknown keys, duplicate keys, wrong types and
// impossible values are all reported at once, each with file:line:column,
// and a file with any problem yields no configuration.
//
// Both files name the same things the same way (listen, health, sticky
// secret_file). A key that was renamed keeps working under its old name,
// declared on the struct field with a deprecated:"old_name" tag: it loads
// the same value and adds a warning (a Problem that does not fail the
// load) naming the new key; writing both names is an error.
package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Pos is a 1-based line and column in a file. The zero Pos means unknown.
type Pos struct{ Line, Col int }

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string
	Pos  Pos
	Path string // field path such as "group.min" or "env.API_KEY"; may be empty
	Msg  string
}

// String formats the problem as "file:line:col: path: message", omitting unknown parts.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Pos.Line, p.Pos.Col)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file, in file order. It is the
// error type returned by the loaders.
type Problems []Problem

// Error lists every problem, one a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// document remembers where each decoded value came from so that validation
// can point at it.
type document struct {
	file  string
	pos   map[string]Pos // field path -> position of its value (or key)
	probs Problems
	warns Problems // deprecated keys, in file order; they do not fail the load
}

func (d *document) errorf(path string, format string, a ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Pos: d.at(path), Path: path, Msg: fmt.Sprintf(format, a...)})
}

// at returns the position of path, or of its nearest ancestor that was
// present in the file.
func (d *document) at(path string) Pos {
	for path != "" {
		if p, ok := d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return d.pos[""]
}

// has reports whether path was written in the file.
func (d *document) has(path string) bool {
	_, ok := d.pos[path]
	return ok
}

func (d *document) sorted() Problems {
	sort.SliceStable(d.probs, func(i, j int) bool {
		a, b := d.probs[i].Pos, d.probs[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return d.probs
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// decode parses data strictly into out (a pointer to a struct). Problems
// found while decoding are recorded in the returned document.
func decode(file string, data []byte, out any) *document {
	d := &document{file: file, pos: map[string]Pos{"": {1, 1}}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		p := Problem{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			p.Pos = Pos{n, 1}
			p.Msg = strings.TrimSpace(yamlLine.ReplaceAllString(p.Msg, ""))
			p.Msg = strings.TrimPrefix(p.Msg, ": ")
		}
		d.probs = append(d.probs, p)
		return d
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		d.errorf("", "the file is empty")
		return d
	}
	d.value(root.Content[0], reflect.ValueOf(out).Elem(), "")
	return d
}

func pathJoin(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// oneOrManyType is implemented by the slice types whose key also takes a
// single value (URLList).
var oneOrManyType = reflect.TypeFor[interface{ oneOrMany() }]()

// value decodes node into v, recording problems under path.
func (d *document) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.pos[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value; validation decides if it was required
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(path, "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.errorf(path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && v.Type().Implements(oneOrManyType) {
			// A key that takes one value or a list (URLList): a list of one.
			s := reflect.MakeSlice(v.Type(), 1, 1)
			d.value(n, s.Index(0), path)
			v.Set(s)
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		d.scalar(n, v, path)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func (d *document) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, "expected a single value, got %s", kindName(n))
		return
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || n.Tag != "!!bool" {
			d.errorf(path, "expected true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			d.errorf(path, "expected a whole number, got %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			d.errorf(path, "expected a whole number >= 0, got %q", s)
			return
		}
		v.SetUint(i)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			d.errorf(path, "expected a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(path, "cannot decode into %s", v.Type())
	}
}

func (d *document) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(path, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.errorf(path, "cannot decode into %s", v.Type())
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := pathJoin(path, k.Value)
		if seen[k.Value] {
			d.pos[p] = Pos{k.Line, k.Column}
			d.errorf(p, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, p)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// fieldName returns the yaml key of a struct field, or "" to skip it.
func fieldName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("yaml")
	if tag == "-" {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// structField is a struct field as the file names it.
type structField struct {
	idx  int
	name string // the key
}

// structFields returns the keys of struct type t, in field order, and its
// deprecated keys (from a deprecated:"old_name" tag) with the field each
// one stands for.
func structFields(t reflect.Type) (keys []structField, old map[string]structField) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := fieldName(f)
		if name == "" {
			continue
		}
		keys = append(keys, structField{i, name})
		if o := f.Tag.Get("deprecated"); o != "" {
			if old == nil {
				old = map[string]structField{}
			}
			old[o] = structField{i, name}
		}
	}
	return keys, old
}

func (d *document) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(path, "expected a mapping, got %s", kindName(n))
		return
	}
	keys, old := structFields(v.Type())
	fields := map[string]structField{}
	known := make([]string, 0, len(keys))
	for _, f := range keys {
		fields[f.name] = f
		known = append(known, f.name)
	}
	type written struct {
		key string // as written: the key or its deprecated name
		at  Pos
	}
	seen := map[string]written{} // key -> where it was first written
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		at := Pos{k.Line, k.Column}
		f, ok := fields[k.Value]
		deprecated := false
		if !ok {
			f, deprecated = old[k.Value]
			ok = deprecated
		}
		if !ok {
			p := pathJoin(path, k.Value)
			d.pos[p] = at
			d.errorf(p, "unknown key %q (known keys: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		// A deprecated key is decoded under its new path, so that
		// defaults, validation and messages see one name.
		p := pathJoin(path, f.name)
		if first, dup := seen[f.name]; dup {
			if first.key == k.Value {
				d.pos[p] = at
				d.errorf(p, "duplicate key %q", k.Value)
				continue
			}
			oldKey, oldAt, newAt := first.key, first.at, at
			if deprecated {
				oldKey, oldAt, newAt = k.Value, at, first.at
			}
			d.probs = append(d.probs, Problem{File: d.file, Pos: at, Path: p,
				Msg: fmt.Sprintf("set twice: as %q at %d:%d and under its old name %q at %d:%d; keep %q only",
					f.name, newAt.Line, newAt.Col, oldKey, oldAt.Line, oldAt.Col, f.name)})
			continue
		}
		seen[f.name] = written{k.Value, at}
		if deprecated {
			d.warns = append(d.warns, Problem{File: d.file, Pos: at, Path: pathJoin(path, k.Value),
				Msg: fmt.Sprintf("%q is a deprecated name: rename it to %q (it means the same)", k.Value, f.name)})
		}
		d.value(val, v.Field(f.idx), p)
	}
}

// errNoUnit is returned for durations written without a unit.
var errNoUnit = errors.New("a duration needs a unit, such as 500ms, 5s or 2m")
