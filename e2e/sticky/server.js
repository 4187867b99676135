// One backend of the stickiness test: an HTTP server on 127.0.0.1 with a
// socket.io server (path /socket.io) and a SockJS server (prefix /sockjs).
// Both echo every message back with the backend's name, so the client can
// tell that one session stayed on one backend. It prints
// "listening name=NAME addr=127.0.0.1:PORT" once bound and exits on
// SIGTERM or when stdin closes (so it never outlives the Go test). Run as
// an instance of `shoal up` it listens on $PORT and leaves stdin alone
// (shoal stops it with a signal).
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const sockjs = require('sockjs');

const name = process.argv[2] || 'backend';

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`backend ${name}\n`);
});

const io = new Server(server, {
  transports: ['polling'],
  // Long polls end quickly so a session exercises many requests (the
  // latency test holds them longer: PING_INTERVAL_MS).
  pingInterval: Number(process.env.PING_INTERVAL_MS || 2000),
  pingTimeout: 5000,
});
io.on('connection', (socket) => {
  socket.on('echo', (msg, ack) => ack({ backend: name, msg }));
});

const sjs = sockjs.createServer({ log: () => {}, disconnect_delay: 2000 });
sjs.on('connection', (conn) => {
  conn.on('data', (msg) => conn.write(JSON.stringify({ backend: name, msg })));
});
sjs.installHandlers(server, { prefix: '/sockjs' });

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`listening name=${name} addr=${address}:${port}`);
});

function stop() {
  io.close();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
if (!process.env.PORT) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
