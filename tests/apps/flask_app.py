"""The Flask app the harness runs with Flask's development server (`flask run`)."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"ok pid={os.getpid()}\n", 200, {"Content-Type": "text/plain"}
