// The server of the fixture bundle: what the tests need of a Meteor server.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const port = Number(process.env.PORT);
if (!port) {
  console.error('boot.js: PORT is not set');
  process.exit(1);
}
const rootURL = process.env.ROOT_URL || '';
let settings = {};
if (process.env.METEOR_SETTINGS) {
  settings = JSON.parse(process.env.METEOR_SETTINGS); // a real server exits on bad settings too
}
const forwardedCount = Number(process.env.HTTP_FORWARDED_COUNT || 0);

const web = path.join(__dirname, '..', 'web.browser');
const manifest = JSON.parse(fs.readFileSync(path.join(web, 'program.json'), 'utf8')).manifest;
const assets = new Map(manifest.map((m) => [m.url, path.join(web, m.path)]));

// Meteor's clientAddress: with HTTP_FORWARDED_COUNT proxies in front, the
// address that many entries from the end of X-Forwarded-For.
function clientAddress(req) {
  const xff = (req.headers['x-forwarded-for'] || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (forwardedCount === 0 || xff.length < forwardedCount) return req.socket.remoteAddress;
  return xff[xff.length - forwardedCount];
}

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (url === '/debug/env') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({
      settings, root_url: rootURL, http_forwarded_count: process.env.HTTP_FORWARDED_COUNT || null,
      mongo_url: process.env.MONGO_URL || null, node_env: process.env.NODE_ENV || null,
      feature: process.env.FEATURE || null, client_address: clientAddress(req), pid: process.pid,
    }));
    return;
  }
  if (assets.has(url)) {
    res.setHeader('Content-Type', 'application/javascript');
    fs.createReadStream(assets.get(url)).pipe(res);
    return;
  }
  if (url === '/') {
    const config = {ROOT_URL: rootURL, PUBLIC_SETTINGS: settings.public || {}};
    res.setHeader('Content-Type', 'text/html');
    res.end('<!DOCTYPE html><html><head><script>__meteor_runtime_config__ = ' +
      JSON.stringify(config) + ';</script><script src="/app.js"></script></head><body></body></html>\n');
    return;
  }
  res.statusCode = 404;
  res.end('not found\n');
});
server.listen(port, '127.0.0.1', () => console.log('listening on ' + port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
