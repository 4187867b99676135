// A minimal RFC 6455 WebSocket server side: the opening handshake, masked client frames,
// fragmentation, ping/pong and the closing handshake. Enough for an echo endpoint; no
// extensions (permessage-deflate is simply not negotiated).
'use strict';

const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 section 1.3
const MAX_MESSAGE = 1 << 20;
const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

function reject(socket, status, reason) {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  return null;
}

// accept completes the handshake for an 'upgrade' request and returns a Connection, or
// answers with an HTTP error and returns null.
function accept(req, socket, head) {
  const key = req.headers['sec-websocket-key'];
  if (req.method !== 'GET' || String(req.headers.upgrade).toLowerCase() !== 'websocket') {
    return reject(socket, 400, 'Bad Request');
  }
  if (req.headers['sec-websocket-version'] !== '13') {
    socket.end('HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\ncontent-length: 0\r\n\r\n');
    return null;
  }
  if (!key || Buffer.from(key, 'base64').length !== 16) return reject(socket, 400, 'Bad Request');
  const acceptKey = crypto.createHash('sha1').update(key + GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
    `sec-websocket-accept: ${acceptKey}\r\n\r\n`);
  return new Connection(socket, head);
}

function frame(opcode, payload) {
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([header, payload]);
}

// Connection emits 'message' (opcode, Buffer) for whole text/binary messages and 'close'
// once when the connection ends.
class Connection extends EventEmitter {
  constructor(socket, head) {
    super();
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.fragments = null; // { opcode, parts: [], size }
    this.closeSent = false;
    this.closed = false;
    socket.setNoDelay(true);
    socket.on('data', (d) => this.onData(d));
    socket.on('close', () => this.finish());
    socket.on('error', () => this.finish());
    if (head && head.length) this.onData(head);
  }

  send(opcode, payload) {
    if (this.closeSent || this.socket.destroyed) return;
    this.socket.write(frame(opcode, payload));
  }

  close(code, reason) {
    if (this.closeSent || this.socket.destroyed) return;
    const r = Buffer.from(reason || '', 'utf8');
    const body = Buffer.alloc(2 + r.length);
    body.writeUInt16BE(code, 0);
    r.copy(body, 2);
    this.socket.write(frame(OP.CLOSE, body));
    this.closeSent = true;
    // Wait for the peer's close frame, but not forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  fail(code, reason) {
    this.close(code, reason);
    this.socket.end();
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const f = this.parse();
      if (!f) return;
      if (!this.handle(f)) return;
    }
  }

  // parse takes one frame off the buffer, or returns null if it is incomplete.
  parse() {
    const b = this.buf;
    if (b.length < 2) return null;
    const fin = (b[0] & 0x80) !== 0;
    const rsv = b[0] & 0x70;
    const opcode = b[0] & 0x0f;
    const masked = (b[1] & 0x80) !== 0;
    let len = b[1] & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(MAX_MESSAGE)) return { error: [1009, 'message too big'] };
      len = Number(big);
      off = 10;
    }
    if (rsv) return { error: [1002, 'reserved bits set'] };
    if (!masked) return { error: [1002, 'client frames must be masked'] }; // RFC 6455 5.1
    if (len > MAX_MESSAGE) return { error: [1009, 'message too big'] };
    if (b.length < off + 4 + len) return null;
    const mask = b.subarray(off, off + 4);
    const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    this.buf = b.subarray(off + 4 + len);
    return { fin, opcode, payload };
  }

  // handle acts on one frame; it returns false when the connection is done.
  handle(f) {
    if (f.error) {
      this.fail(f.error[0], f.error[1]);
      return false;
    }
    const { fin, opcode, payload } = f;
    if (opcode >= 0x8) {
      if (!fin || payload.length > 125) {
        this.fail(1002, 'bad control frame');
        return false;
      }
      if (opcode === OP.PING) {
        this.send(OP.PONG, payload);
      } else if (opcode === OP.CLOSE) {
        if (!this.closeSent) {
          // Echo the peer's status code (RFC 6455 5.5.1); none given means none echoed.
          this.socket.write(frame(OP.CLOSE, payload.subarray(0, 2)));
          this.closeSent = true;
        }
        this.socket.end();
        return false;
      } else if (opcode !== OP.PONG) {
        this.fail(1002, 'unknown control opcode');
        return false;
      }
      return true;
    }
    if (opcode === OP.CONT) {
      if (!this.fragments) {
        this.fail(1002, 'continuation without a start');
        return false;
      }
      this.fragments.parts.push(payload);
      this.fragments.size += payload.length;
      if (this.fragments.size > MAX_MESSAGE) {
        this.fail(1009, 'message too big');
        return false;
      }
      if (fin) {
        const m = this.fragments;
        this.fragments = null;
        return this.deliver(m.opcode, Buffer.concat(m.parts));
      }
      return true;
    }
    if (opcode !== OP.TEXT && opcode !== OP.BINARY) {
      this.fail(1002, 'unknown opcode');
      return false;
    }
    if (this.fragments) {
      this.fail(1002, 'new message inside a fragmented one');
      return false;
    }
    if (!fin) {
      this.fragments = { opcode, parts: [payload], size: payload.length };
      return true;
    }
    return this.deliver(opcode, payload);
  }

  deliver(opcode, data) {
    if (opcode === OP.TEXT) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(data);
      } catch {
        this.fail(1007, 'invalid UTF-8');
        return false;
      }
    }
    this.emit('message', opcode, data);
    return true;
  }
}

module.exports = { accept, Connection, OP };
