// A Node worker's health server, as in the nodemon report: http.createServer on PORT, a clean
// shutdown on SIGTERM. Every response closes the connection from the server's side, which
// leaves TIME_WAIT sockets on the port. Node sets SO_REUSEADDR itself, so Node alone
// restarts fine; the nodemon configuration beside this file runs it under reuse all the same,
// and the same configuration works for an app in any language (see README.md).
'use strict';

const http = require('http');

const port = Number(process.env.PORT || 9090);
const host = process.env.HOST; // unset: every address, like `listen(port)` in the report

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', Connection: 'close' });
  res.end(`ok pid=${process.pid}\n`);
});

server.on('error', (err) => {
  console.error(`Failed to start health check server: ${err.stack || err}`);
  process.exit(1);
});

server.listen(port, host, () => {
  console.error(`health server listening on ${host || '*'}:${port} (pid ${process.pid})`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Never hang the supervisor: exit anyway after a second.
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
