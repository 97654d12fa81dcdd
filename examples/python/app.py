"""A small Python service as people write them: the standard library's socketserver.TCPServer,
which leaves SO_REUSEADDR off, so a restart while TIME_WAIT sockets are left on its port fails
with "[Errno 98] Address already in use" for about 60 s. Run under reuse, it restarts at once.

    PORT=8000 reuse run -- python3 app.py

It answers every request with one HTTP/1.0 response and closes the connection first (the close
that leaves TIME_WAIT on the server's port), and shuts down cleanly on SIGTERM or Ctrl-C.
"""

import os
import signal
import socketserver
import sys


class Health(socketserver.StreamRequestHandler):
    def handle(self):
        # Read the request head up to its blank line, so closing never resets the connection.
        for _ in range(100):
            line = self.rfile.readline(8192)
            if line in (b"", b"\r\n", b"\n"):
                break
        body = b"ok pid=%d\n" % os.getpid()
        # No Content-Length: the end of the body is the server's close, as in HTTP/1.0.
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)


def main():
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    # A clean stop on SIGTERM (what nodemon, systemd and docker send): leave serve_forever,
    # close the listening socket. TIME_WAIT is left all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with socketserver.TCPServer((host, port), Health) as server:
        print(f"listening on {host}:{port} (pid {os.getpid()})", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
