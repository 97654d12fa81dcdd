"""A server whose shutdown keeps its port for a second after it exits: on SIGTERM it hands its
listening socket to a helper (`sleep 1`, in a session of its own so a supervisor's kill of the
tree does not reach it) and exits. The next instance, started at once, finds a live listener:
EADDRINUSE, whatever SO_REUSEADDR says, unless it waits (REUSE_WAIT_MS).

    PORT=8000 python3 slow_release.py
"""

import os
import signal
import socketserver
import subprocess
import sys


class Hello(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline(8192)
        self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\nok pid=%d\n" % os.getpid())


def main():
    port = int(os.environ["PORT"])
    server = socketserver.TCPServer(("127.0.0.1", port), Hello)

    def stop(*_):
        subprocess.Popen(["sleep", "1"], pass_fds=(server.fileno(),), start_new_session=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on {port} (pid {os.getpid()})", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
