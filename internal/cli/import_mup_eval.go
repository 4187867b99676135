package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// mupEvalTimeout bounds the evaluation of a mup.js.
const mupEvalTimeout = 10 * time.Second

// mupEvalMaxOutput bounds what node may print (the configuration as JSON).
const mupEvalMaxOutput = 8 << 20

// mupEvalScript runs in `node -e`: it requires the mup.js named by
// argv[1] with the network modules disabled, walks the exported object
// and prints {"config": ..., "dropped": [{"path", "kind"}]} on stdout.
// Values JSON cannot hold (functions, undefined, symbols, bigints,
// non-finite numbers, cycles, regular expressions) are left out and
// listed in dropped with their path, so that the report can name them.
const mupEvalScript = `
'use strict';
const deny = (what) => () => { throw new Error('shoal import mup: mup.js may not use the network (' + what + ')'); };
const net = require('net');
net.connect = net.createConnection = deny('net.connect');
net.Socket.prototype.connect = deny('socket.connect');
const tls = require('tls');
tls.connect = deny('tls.connect');
const dgram = require('dgram');
dgram.createSocket = deny('dgram');
for (const m of ['http', 'https']) {
  const h = require(m);
  h.request = h.get = deny(m);
}
const dns = require('dns');
for (const k of Object.keys(dns)) {
  if (typeof dns[k] === 'function' && k !== 'Resolver') dns[k] = deny('dns.' + k);
}
globalThis.fetch = deny('fetch');

let exported = require(process.argv[1]);
const dropped = [];
const ident = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const key = (p, k) => ident.test(k) ? (p ? p + '.' + k : k) : p + '[' + JSON.stringify(k) + ']';
const seen = new Set();
function walk(v, p) {
  switch (typeof v) {
    case 'undefined': dropped.push({path: p, kind: 'undefined'}); return undefined;
    case 'function': dropped.push({path: p, kind: 'a function'}); return undefined;
    case 'symbol': dropped.push({path: p, kind: 'a symbol'}); return undefined;
    case 'bigint': dropped.push({path: p, kind: 'a bigint'}); return undefined;
    case 'number':
      if (!Number.isFinite(v)) { dropped.push({path: p, kind: String(v)}); return undefined; }
      return v;
    case 'string': case 'boolean': return v;
  }
  if (v === null) return null;
  if (v instanceof Date) return v.toISOString();
  if (v instanceof RegExp) { dropped.push({path: p, kind: 'a regular expression'}); return undefined; }
  if (seen.has(v)) { dropped.push({path: p, kind: 'a circular reference'}); return undefined; }
  seen.add(v);
  let out;
  if (Array.isArray(v)) {
    out = v.map((e, i) => { const w = walk(e, p + '[' + i + ']'); return w === undefined ? null : w; });
  } else {
    out = {};
    for (const k of Object.keys(v)) {
      const w = walk(v[k], key(p, k));
      if (w !== undefined) out[k] = w;
    }
  }
  seen.delete(v);
  return out;
}
if (exported && typeof exported === 'object' && exported.__esModule && 'default' in exported) exported = exported.default;
if (exported === null || typeof exported !== 'object' || Array.isArray(exported)) {
  process.stderr.write('shoal import mup: mup.js must export an object (module.exports = {...}), it exports ' +
    (Array.isArray(exported) ? 'an array' : exported === null ? 'null' : typeof exported) + '\n');
  process.exit(3);
}
process.stdout.write(JSON.stringify({config: walk(exported, ''), dropped}), () => process.exit(0));
`

// mupDropped is a value of mup.js that JSON cannot hold.
type mupDropped struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// evalMupJS evaluates the mup.js at path (absolute) with node, in a child
// process bounded by timeout (mupEvalTimeout for the command), and returns the exported object and
// the values left out of it. The child has the caller's environment (a
// mup.js often reads process.env) and its folder as working directory;
// its network modules throw, and where node has the permission model
// (Node 20 and later) it may read files but not write them, start
// processes or load addons. An error of the file (it throws, exports no
// object, runs too long) is a *UsageError that names the file and quotes
// what node printed.
func evalMupJS(ctx context.Context, node, path string, timeout time.Duration) (map[string]any, []mupDropped, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"--no-warnings"}
	if flag := nodePermissionFlag(ctx, node); flag != "" {
		args = append(args, flag, "--allow-fs-read=*")
	}
	args = append(args, "-e", mupEvalScript, path)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = filepath.Dir(path)
	cmd.WaitDelay = time.Second
	var stdout limitedBuffer
	stdout.max = mupEvalMaxOutput
	var stderr limitedBuffer
	stderr.max = 64 << 10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, nil, usagef("%s: node did not finish evaluating it within %s (does it wait for something?)", path, timeout)
	}
	if stdout.over {
		return nil, nil, usagef("%s: node printed more than %d bytes evaluating it", path, mupEvalMaxOutput)
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, nil, fmt.Errorf("%s: run node: %w", path, err)
		}
		return nil, nil, usagef("%s: evaluating it with node failed (exit %d):\n%s", path, ee.ExitCode(), nodeErrorText(stderr.String()))
	}
	var out struct {
		Config  map[string]any `json:"config"`
		Dropped []mupDropped   `json:"dropped"`
	}
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("%s: reading what node printed: %w", path, err)
	}
	return out.Config, out.Dropped, nil
}

var nodeMajorRe = regexp.MustCompile(`^v(\d+)\.`)

// nodePermissionFlag returns the flag that turns on node's permission
// model ("--permission" from Node 22, "--experimental-permission" in
// Node 20 and 21), or "" for an older node.
func nodePermissionFlag(ctx context.Context, node string) string {
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return ""
	}
	m := nodeMajorRe.FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		return ""
	}
	major, _ := strconv.Atoi(m[1])
	switch {
	case major >= 22:
		return "--permission"
	case major >= 20:
		return "--experimental-permission"
	}
	return ""
}

// nodeErrorText keeps the useful part of node's error output: the lines
// up to the first stack frame below the error message, at most 20.
func nodeErrorText(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []string
	frames := 0
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "at ") {
			frames++
			if frames > 2 {
				continue
			}
		}
		out = append(out, "  "+l)
		if len(out) == 20 {
			break
		}
	}
	return strings.Join(out, "\n")
}

// limitedBuffer keeps at most max bytes and notes whether more came.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

var _ io.Writer = (*limitedBuffer)(nil)
