package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// appMaxEnvString is the longest NAME=value string Linux passes to a new
// process (MAX_ARG_STRLEN, 32 pages); a longer one makes exec fail.
const appMaxEnvString = 128 << 10

// parseSecrets reads a secrets file: KEY=VALUE lines, blank lines and
// # comments ignored, an optional "export " prefix, values optionally in
// single quotes (literal) or double quotes (with \n, \t, \", \\ escapes).
//
// Problems name the file and line but never contain any part of a line
// that could be a value: a malformed line may be a pasted secret.
func parseSecrets(file string, data []byte) ([]EnvVar, Problems) {
	var out []EnvVar
	var probs Problems
	seen := map[string]int{}
	if !utf8.Valid(data) {
		return nil, Problems{{File: file, Msg: "the secrets file is not UTF-8 text"}}
	}
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		pos := Pos{i + 1, 1}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(path, format string, a ...any) {
			probs = append(probs, Problem{File: file, Pos: pos, Path: path, Msg: fmt.Sprintf(format, a...)})
		}
		line = strings.TrimPrefix(line, "export ")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			bad("", "expected NAME=value (the line is not shown: it may hold a secret)")
			continue
		}
		name = strings.TrimSpace(name)
		if !appEnvNameRe.MatchString(name) {
			bad("", "invalid variable name before '=' (use letters, digits and _, not starting with a digit)")
			continue
		}
		if why := envNameProblem(name); why != "" {
			bad(name, "%s", why)
			continue
		}
		v, err := secretValue(strings.TrimSpace(value))
		if err != nil {
			bad(name, "%v (the value is not shown)", err)
			continue
		}
		if first, dup := seen[name]; dup {
			bad(name, "%s is already set on line %d", name, first)
			continue
		}
		if len(name)+1+len(v) > appMaxEnvString {
			bad(name, "the value is longer than the %d bytes Linux allows for one variable", appMaxEnvString)
			continue
		}
		seen[name] = pos.Line
		out = append(out, EnvVar{Name: name, Value: v, Secret: true})
	}
	return out, probs
}

var errUnterminated = errors.New("unterminated quote")

// secretValue unquotes the value part of a secrets line.
func secretValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch q := v[0]; q {
	case '\'':
		if len(v) < 2 || v[len(v)-1] != '\'' {
			return "", errUnterminated
		}
		return v[1 : len(v)-1], nil
	case '"':
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"':
				if i != len(v)-1 {
					return "", errors.New("text after the closing quote")
				}
				return b.String(), nil
			case c != '\\':
				b.WriteByte(c)
				continue
			}
			i++
			if i == len(v) {
				break
			}
			switch v[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\', '$':
				b.WriteByte(v[i])
			default:
				return "", errors.New(`unknown escape in a double-quoted value (known: \n \t \r \" \\ \$)`)
			}
		}
		return "", errUnterminated
	}
	if strings.ContainsRune(v, 0) {
		return "", errors.New("the value contains a NUL byte")
	}
	return v, nil
}

// parseSettings checks that data is one JSON value and returns it compact,
// or a problem positioned in file. The message never quotes the file.
func parseSettings(file string, data []byte) (string, *Problem) {
	var buf bytes.Buffer
	if !json.Valid(data) {
		// Compact reports no offset; decoding does.
		var v any
		err := json.Unmarshal(data, &v)
		p := &Problem{File: file, Msg: "invalid JSON"}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			p.Pos = appOffsetPos(data, se.Offset)
			p.Msg = "invalid JSON: " + jsonReason(se)
		}
		return "", p
	}
	if err := json.Compact(&buf, data); err != nil {
		return "", &Problem{File: file, Msg: "invalid JSON"}
	}
	if buf.Len() == 0 {
		return "", &Problem{File: file, Msg: "the settings file is empty (write {} for no settings)"}
	}
	if len("METEOR_SETTINGS=")+buf.Len() > appMaxEnvString {
		return "", &Problem{File: file, Msg: fmt.Sprintf("the settings are %d bytes once compacted, more than the %d bytes Linux allows for one variable", buf.Len(), appMaxEnvString)}
	}
	return buf.String(), nil
}

// jsonReason returns the parser's explanation without the offending
// character, which might belong to a secret.
func jsonReason(se *json.SyntaxError) string {
	msg := se.Error()
	rest, ok := strings.CutPrefix(msg, "invalid character ")
	if !ok {
		return msg
	}
	// rest is "'c' context", where 'c' may be '\''.
	if i := strings.Index(rest[min(1, len(rest)):], "' "); i >= 0 {
		return "unexpected character " + rest[i+3:]
	}
	return "unexpected character"
}

// appOffsetPos converts a byte offset (as reported by encoding/json: the
// offset after the offending byte) to a 1-based line and column.
func appOffsetPos(data []byte, off int64) Pos {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off-- // the offset points just past the bad byte
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return Pos{line, col}
}
