#!/usr/bin/env python3
"""The benchmark's baseline: plain Bottle + waitress serving a directory.

    python bench/baseline_app.py DIR [PORT]      (PORT 0, the default: any free port)

``PUT /files/<name>`` stores the body as DIR/<name>: streamed to a temporary
file in DIR in 1 MiB pieces, then renamed over the name (no hashing, no
fsync); answers 201. ``GET /files/<name>`` is ``bottle.static_file``, which
also answers Range and conditional requests. Nothing else: no database, no
checks beyond refusing names that start with a dot. It is the floor a
Bottle + waitress file server can reach, for bench_http.py to compare with.

Waitress gets the settings that ``fileserver serve --max-upload-size 0``
gives it (fileserver/server.py, ``make_server``). Once listening, a line
``baseline: serving http://HOST:PORT/ ...`` is printed.
"""

import os
import sys
import tempfile

import bottle
import waitress

HOST = "127.0.0.1"
CHUNK = 1 << 20
WAITRESS = {"threads": 8, "recv_bytes": 256 * 1024, "max_request_body_size": 2**62}


def make_app(root: str) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.put("/files/<name>")
    def put_file(name):
        if name.startswith("."):  # no "." or "..", and not our temporary files
            bottle.abort(400, "bad file name")
        fd, temp = tempfile.mkstemp(dir=root, prefix=".upload-")
        try:
            with open(fd, "wb") as out:
                body = bottle.request.environ["wsgi.input"]  # waitress ends it with the body
                while chunk := body.read(CHUNK):
                    out.write(chunk)
            os.replace(temp, os.path.join(root, name))
        except BaseException:
            os.unlink(temp)
            raise
        bottle.response.status = 201
        return ""

    @app.get("/files/<name>")
    def get_file(name):
        return bottle.static_file(name, root=root)

    return app


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    root = os.path.abspath(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    os.makedirs(root, exist_ok=True)
    # waitress.serve(app, host=HOST, port=port, **WAITRESS), but printing the
    # address it actually listens on (PORT 0) before it starts serving.
    server = waitress.create_server(make_app(root), host=HOST, port=port, **WAITRESS)
    print(f"baseline: serving http://{HOST}:{server.effective_port}/ from {root}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
