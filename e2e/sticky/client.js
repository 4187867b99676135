// A long-polling client of the stickiness test. Usage:
//
//   node client.js socketio|sockjs BASE_URL MESSAGES [HOLD_MS]
//
// It connects through the balancer at BASE_URL with a polling transport
// only (socket.io: polling; SockJS: xhr-polling), sends MESSAGES messages
// one after the other and waits for each echo. It prints one JSON line,
// {"ok":true,"backends":[...]} or {"ok":false,"error":"..."}, and exits
// 0 or 1. A session that loses its backend fails: socket.io answers
// "Session ID unknown" (400), SockJS closes the session. With HOLD_MS the
// client then stays connected, long-polling, that many milliseconds more
// before it closes (a session that ends meanwhile fails).
'use strict';

const [kind, base, countArg] = process.argv.slice(2);
const count = Number(countArg || 10);
const holdMs = Number(process.argv[5] || 0);
const backends = new Set();

function done(ok, error) {
  console.log(JSON.stringify(ok ? { ok, kind, messages: count, backends: [...backends] } : { ok, kind, error: String(error) }));
  process.exit(ok ? 0 : 1);
}
setTimeout(() => done(false, `timed out after ${20000 + holdMs}ms`), 20000 + holdMs).unref();

function socketio() {
  const { io } = require('socket.io-client');
  const socket = io(base, {
    transports: ['polling'],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    // In Node, withCredentials turns on engine.io-client's cookie jar, so
    // the balancer's sticky cookie is sent back like a browser would.
    withCredentials: true,
  });
  socket.on('connect_error', (err) => done(false, `connect_error: ${err.message} ${JSON.stringify(err.context && err.context.responseText || '')}`));
  socket.on('disconnect', (reason) => done(false, `disconnected: ${reason}`));
  socket.on('connect', async () => {
    try {
      for (let i = 0; i < count; i++) {
        const reply = await socket.timeout(5000).emitWithAck('echo', `m${i}`);
        if (reply.msg !== `m${i}`) throw new Error(`bad echo ${JSON.stringify(reply)}`);
        backends.add(reply.backend);
      }
    } catch (err) {
      done(false, err.message);
    }
    setTimeout(() => {
      socket.off('disconnect');
      socket.close();
      done(true);
    }, holdMs);
  });
}

function sockjsClient() {
  const SockJS = require('sockjs-client');
  const sock = new SockJS(`${base}/sockjs`, null, { transports: ['xhr-polling'], timeout: 5000 });
  let i = 0;
  sock.onopen = () => sock.send(`m${i}`);
  sock.onmessage = (e) => {
    const reply = JSON.parse(e.data);
    if (reply.msg !== `m${i}`) return done(false, `bad echo ${e.data}`);
    backends.add(reply.backend);
    if (++i === count) {
      setTimeout(() => {
        sock.onclose = null;
        sock.close();
        done(true);
      }, holdMs);
      return;
    }
    sock.send(`m${i}`);
  };
  sock.onclose = (e) => done(false, `closed: ${e.code} ${e.reason} after ${i} messages`);
}

if (kind === 'socketio') socketio();
else if (kind === 'sockjs') sockjsClient();
else done(false, `unknown kind ${kind}`);
