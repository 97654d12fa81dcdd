"""A plain WSGI app for gunicorn; the body names the worker that answered."""

import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok pid=%d\n" % os.getpid()]
