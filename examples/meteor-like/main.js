// A stand-in for a Meteor server, with no dependencies (Node 20 standard library only).
// It behaves like one where Shoal cares: PORT, ROOT_URL and METEOR_SETTINGS from the
// environment, a slow boot, WebSockets (RFC 6455, implemented here by hand), long-polling
// sessions held in process memory (so stickiness matters), a health check that tests can
// turn bad, and a graceful stop on SIGTERM.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const ws = require('./ws');

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('PORT must be set to a TCP port number');
  process.exit(1);
}
const rootURL = process.env.ROOT_URL || `http://127.0.0.1:${port}`;
const instance = process.env.INSTANCE || process.env.SHOAL_INSTANCE_ID || `pid-${process.pid}`;
const bootDelay = Math.max(0, Number(process.env.BOOT_DELAY_MS) || 0);
const pollTimeout = Math.max(1, Number(process.env.POLL_TIMEOUT_MS) || 25000);
// Per-instance state lives in SHOAL_INSTANCE_DIR when Shoal runs us: the working
// directory is the release, shared by every instance of it.
const stateDir = process.env.SHOAL_INSTANCE_DIR || process.cwd();

let settings = {};
if (process.env.METEOR_SETTINGS) {
  try {
    settings = JSON.parse(process.env.METEOR_SETTINGS);
  } catch (err) {
    console.error(`METEOR_SETTINGS is not valid JSON: ${err.message}`);
    process.exit(1);
  }
}
const publicSettings = (settings && typeof settings.public === 'object' && settings.public) || {};

// The client bundle, as Meteor serves it in production: one JavaScript file
// under a content-hashed URL (/<sha1>.js), cacheable forever by browsers and
// shared caches. Its content is made here, deterministically, BUNDLE_KB
// kilobytes (default 2048) of modules of ordinary-looking code; running it
// sets window.__bundle to the module count and the sum its modules compute.
const bundleKB = Math.max(1, Number(process.env.BUNDLE_KB) || 2048);
function makeBundle(kb) {
  const parts = ['(function () {\n"use strict";\nvar modules = [];\n'];
  let size = parts[0].length;
  let i = 0;
  // A fixed pseudo-random sequence (xorshift32): minified identifiers and
  // data, so that the bundle compresses more like a real one than repeated
  // text would.
  let seed = 42;
  const rnd = (n) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$0123456789';
  const ident = (len) => {
    let out = chars[rnd(54)];
    for (let j = 1; j < len; j++) out += chars[rnd(64)];
    return out;
  };
  while (size < kb * 1024 - 200) {
    const m = `modules.push(function module${i}(exports) {\n` +
      `  var name = "component-${i % 97}-${(i * 7919) % 10007}", ${ident(2)}${i} = "${ident(24)}", ${ident(3)} = [${rnd(100000)}, ${rnd(100000)}, "${ident(12)}"];\n` +
      `  var limit = ${(i * 31) % 1000};\n` +
      `  function render(props) { return { tag: "div", key: name, children: [props.title || "", limit] }; }\n` +
      `  exports.value = ${i % 251} + limit % 7;\n` +
      `  exports.render = render;\n` +
      `});\n`;
    parts.push(m);
    size += m.length;
    i++;
  }
  parts.push('var sum = 0;\nfor (var k = 0; k < modules.length; k++) { var e = {}; modules[k](e); sum += e.value; }\n' +
    'window.__bundle = { modules: modules.length, sum: sum };\n})();\n');
  return Buffer.from(parts.join(''));
}
const bundle = makeBundle(bundleKB);
const bundleHash = crypto.createHash('sha1').update(bundle).digest('hex');
const bundlePath = `/${bundleHash}.js`;

let unhealthy = false;
let stopping = false;

function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'x-instance': instance });
  res.end(body);
}

function readBody(req, limit, cb) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > limit) {
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => cb(Buffer.concat(chunks)));
}

// Long-polling sessions: id -> { queue: [Buffer], waiter: res|null, seen: ms }.
const sessions = new Map();
const SESSION_IDLE_MS = 5 * 60 * 1000;
const sweeper = setInterval(() => {
  const now = Date.now();
  for (const [id, s] of sessions) {
    if (!s.waiter && now - s.seen > SESSION_IDLE_MS) sessions.delete(id);
  }
}, 30000);
sweeper.unref();

function handlePoll(req, res, id) {
  const s = sessions.get(id);
  if (!s) return send(res, 404, 'text/plain', 'unknown session\n');
  s.seen = Date.now();
  if (req.method === 'POST') {
    return readBody(req, 1 << 20, (body) => {
      if (s.waiter) {
        const w = s.waiter;
        s.waiter = null;
        clearTimeout(w.timer);
        send(w.res, 200, 'application/octet-stream', body);
      } else {
        s.queue.push(body);
      }
      send(res, 202, 'text/plain', 'queued\n');
    });
  }
  if (req.method !== 'GET') return send(res, 405, 'text/plain', 'method not allowed\n');
  if (s.queue.length > 0) return send(res, 200, 'application/octet-stream', s.queue.shift());
  if (s.waiter) {
    // One waiting GET per session: the newer one wins, the older gets an empty answer.
    clearTimeout(s.waiter.timer);
    send(s.waiter.res, 204, 'text/plain', '');
  }
  const waiter = { res, timer: null };
  waiter.timer = setTimeout(() => {
    if (s.waiter === waiter) s.waiter = null;
    send(res, 204, 'text/plain', '');
  }, pollTimeout);
  s.waiter = waiter;
  req.on('close', () => {
    if (s.waiter === waiter && !res.writableEnded) {
      clearTimeout(waiter.timer);
      s.waiter = null;
    }
  });
}

function page() {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>meteor-like</title></head>
<body>
<h1>meteor-like</h1>
<p>Served by instance <b id="instance">${escapeHTML(instance)}</b>, pid <b id="pid">${process.pid}</b>.</p>
<p>ROOT_URL: <code>${escapeHTML(rootURL)}</code></p>
<h2>Public settings</h2>
<pre id="settings">${escapeHTML(JSON.stringify(publicSettings, null, 2))}</pre>
<script src="${bundlePath}?meteor_js_resource=true"></script>
</body></html>
`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const p = url.pathname;
  if (p === '/' && req.method === 'GET') return send(res, 200, 'text/html; charset=utf-8', page());
  if (p === bundlePath && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, {
      'content-type': 'application/javascript; charset=utf-8',
      'content-length': bundle.length,
      'cache-control': 'public, max-age=31536000, immutable',
      etag: `"${bundleHash}"`,
      'x-instance': instance,
    });
    return res.end(req.method === 'HEAD' ? undefined : bundle);
  }
  if (p === '/healthz') {
    const bad = unhealthy || stopping || fs.existsSync(path.join(stateDir, 'unhealthy'));
    return bad ? send(res, 500, 'text/plain', 'unhealthy\n') : send(res, 200, 'text/plain', 'ok');
  }
  if (p === '/admin/unhealthy' && req.method === 'POST') {
    unhealthy = true;
    return send(res, 200, 'text/plain', 'now unhealthy\n');
  }
  if (p === '/admin/healthy' && req.method === 'POST') {
    unhealthy = false;
    return send(res, 200, 'text/plain', 'now healthy\n');
  }
  if (p === '/poll/session' && req.method === 'POST') {
    const id = crypto.randomBytes(12).toString('hex');
    sessions.set(id, { queue: [], waiter: null, seen: Date.now() });
    return send(res, 201, 'application/json', JSON.stringify({ id, instance }) + '\n');
  }
  if (p.startsWith('/poll/')) return handlePoll(req, res, p.slice('/poll/'.length));
  if (p === '/api/once' && req.method === 'POST') {
    // Records the request's unique id (body) once per request processed,
    // in a file shared by every instance (ONCE_LOG), so a test can check
    // that each POST was processed exactly once across a deploy.
    return readBody(req, 4096, (body) => {
      const id = body.toString('utf8').trim();
      if (!/^[A-Za-z0-9_-]{1,100}$/.test(id)) return send(res, 400, 'text/plain', 'bad id\n');
      fs.appendFileSync(process.env.ONCE_LOG || path.join(stateDir, 'once.log'), id + ' ' + instance + '\n');
      send(res, 200, 'text/plain', instance + '\n');
    });
  }
  if (p === '/api/echo' && req.method === 'POST') {
    return readBody(req, 1 << 20, (body) => {
      send(res, 200, 'application/json',
        JSON.stringify({ instance, pid: process.pid, body: body.toString('utf8') }) + '\n');
    });
  }
  return send(res, 404, 'text/plain', 'not found\n');
});

const sockets = new Set();
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname !== '/ws' || stopping) {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const conn = ws.accept(req, socket, head);
  if (!conn) return;
  sockets.add(conn);
  conn.on('message', (opcode, data) => conn.send(opcode, data)); // echo
  conn.on('close', () => sockets.delete(conn));
});

function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${instance}: ${signal}, stopping gracefully`);
  // Stop accepting; in-flight requests finish; idle keep-alive connections are closed.
  server.close(() => {
    console.log(`${instance}: stopped`);
    process.exit(0);
  });
  for (const s of sessions.values()) {
    if (s.waiter) {
      clearTimeout(s.waiter.timer);
      send(s.waiter.res, 204, 'text/plain', '');
      s.waiter = null;
    }
  }
  for (const c of sockets) c.close(1001, 'going away');
  setTimeout(() => {
    console.error(`${instance}: in-flight work did not finish in time`);
    process.exit(1);
  }, 10000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

console.log(`${instance}: booting (delay ${bootDelay} ms)`);
setTimeout(() => {
  if (stopping) return;
  const host = process.env.HOST || '127.0.0.1';
  server.listen(port, host, () => {
    console.log(`${instance}: listening on ${host}:${port}`);
  });
}, bootDelay);
