"""Local only: moto's server with HTTP keep-alive.

Werkzeug's development server (what moto's `ThreadedMotoServer` runs) answers every request
with `Connection: close`, then waits up to 10 ms for whatever the client might still send
before it closes. Every AWS call of the local stack therefore paid a TCP connect, a new server
thread, that wait and two closes: a profile of the bulk benchmark had about a fifth of the
process there. A plain keep-alive is not enough: the 10 ms drain would then wait (or read the
next request) on every call, and the server writes a response's head and body in two writes,
which Nagle's algorithm holds until the client's delayed ACK (40 ms).

This handler reads the request's body by its Content-Length before the application sees it,
collects the application's answer, and writes it with its own Content-Length on a socket
without Nagle, head and body in one send, so the connection stays usable for the client's
next request. A chunked request
is answered by werkzeug's own code and the connection closed, as before; an application error
is a 500 and closes the connection too. `stop()` closes the connections still open, so nothing
answers on the port once the stack has stopped.

A DynamoDB call (`X-Amz-Target: DynamoDB_20120810.<Operation>`, most of the local stack's
calls) goes straight to moto's DynamoDB handler, as moto's Flask view of it calls it (the same
request class, `dispatch`, the recorder, a ClientError as a 400, the answer as a Flask
response), without the routing, Flask's request context and its CORS hooks around it: a
profile of the bulk benchmark had a fifth of the server's time in those, for no call that
needs them (a browser's cross-origin call to DynamoDB, the one CORS answers, never reaches
the local stack).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import re
import socket
import threading
from typing import Any

from botocore.exceptions import ClientError
from flask import Response
from moto.dynamodb.responses import DynamoHandler
from moto.moto_api import recorder
from moto.moto_server.werkzeug_app import (
    BackendRequest,
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

# a header the handler writes itself (the framing), never the application's
_FRAMING = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class KeepAliveHandler(MotoRequestHandler):
    """A moto request handler that keeps the connection open between requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # an idle connection's thread ends after this long (the client reconnects)

    def setup(self) -> None:
        super().setup()
        opened: set[socket.socket] | None = getattr(self.server, "open_connections", None)
        if opened is not None:
            with _lock:
                opened.add(self.connection)
                self.server.accepted += 1  # type: ignore[attr-defined]

    def finish(self) -> None:
        opened: set[socket.socket] | None = getattr(self.server, "open_connections", None)
        if opened is not None:
            with _lock:
                opened.discard(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        length = self.headers.get("Content-Length")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or (
                length is not None and not length.strip().isdigit()):
            self.close_connection = True  # werkzeug frames it, and closes
            super().run_wsgi()
            return
        body = self.rfile.read(int(length)) if length else b""
        if length and len(body) != int(length):  # the client went away mid-body
            self.close_connection = True
            return
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # noqa: BLE001 - a 500, as werkzeug answers it, then closed
            import traceback

            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            self.close_connection = True
            self._write("500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")],
                        b"Internal Server Error")
            return
        self._write(answer["status"], answer["headers"], b"".join(chunks))

    def _write(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        bodiless = 100 <= code < 200 or code in (204, 304)
        self.send_response(code, reason)
        declared = None
        for name, value in headers:
            if name.lower() == "content-length":
                declared = value
            if name.lower() not in _FRAMING:
                self.send_header(name, value)
        if self.command == "HEAD":  # the length of the body a GET would have had
            if declared is not None:
                self.send_header("Content-Length", declared)
            body = b""
        elif bodiless:
            body = b""
        else:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # the head and the body in one send (end_headers would send the head alone): each
        # send gives up the GIL, and taking it back waits behind every busy thread
        self._headers_buffer.append(b"\r\n")
        if body:
            self._headers_buffer.append(body)
        self.flush_headers()
        self.log_request(code, len(body))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug formats every request line before its logger drops it (the local stack
        # keeps it at WARNING): a line is only formatted for a logger that would print it
        # (the logger held once: getLogger takes logging's module lock on every call)
        if _WERKZEUG.level == logging.NOTSET or _WERKZEUG.isEnabledFor(logging.INFO):
            super().log_request(code, size)


_WERKZEUG = logging.getLogger("werkzeug")


_lock = threading.Lock()


# -- header blocks ---------------------------------------------------------------------------
# http.client parses every header block (each request the server reads, each response a
# client reads) with the e-mail package's feed parser: a tenth of the local stack's time. A
# plain block (a `Name: value` a line) gives the same message read line by line; anything
# else (a folded line, a line without a colon, a space before the colon) goes to the
# e-mail parser as before.

_ORIGINAL: dict[str, Any] = {"parse_headers": http.client.parse_headers}
_installed: list[bool] = []


def parse_headers(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage,
                  ) -> http.client.HTTPMessage:
    """`http.client.parse_headers`, with a plain block read without the e-mail parser."""
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]
    fields = _plain(lines)
    if fields is None:
        import email.parser

        text = b"".join(lines).decode("iso-8859-1")
        return email.parser.Parser(_class=_class).parsestr(text)
    msg = _class()
    for name, value in fields:
        msg.set_raw(name, value)
    msg.set_payload("")
    return msg


# a plain header line: a name of visible characters but the colon, the colon, the value
_PLAIN = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n")


def _plain(lines: list[bytes]) -> list[tuple[str, str]] | None:
    """The (name, value) pairs of a block of plain header lines, as the e-mail parser's
    compat32 policy reads them, or None when a line is anything else."""
    out = []
    for raw in lines:
        if raw in (b"\r\n", b"\n", b""):
            break
        m = _PLAIN.fullmatch(raw.decode("iso-8859-1"))
        if m is None:
            return None
        out.append((m[1], m[2]))
    return out


def install() -> None:
    """Install the header parser (process-wide: the local stack only)."""
    if _installed:
        return
    _installed.append(True)
    setattr(http.client, "parse_headers", parse_headers)  # noqa: B010


def uninstall() -> None:
    if not _installed:
        return
    _installed.clear()
    setattr(http.client, "parse_headers", _ORIGINAL["parse_headers"])  # noqa: B010


_DYNAMODB = "DynamoDB_20120810."


class DirectDynamoDB:
    """A WSGI application: moto's, with DynamoDB's calls answered by moto's DynamoDB handler
    directly (what moto's Flask view of DynamoDB does, without Flask around it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if (not environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB)
                or environ.get("PATH_INFO") != "/" or environ.get("REQUEST_METHOD") != "POST"):
            return self.app(environ, start_response)
        request = BackendRequest(environ)
        recorder._record_request(request)
        try:
            result = DynamoHandler.dispatch(request, request.raw_url, dict(request.headers))
        except ClientError as exc:
            result = 400, {}, exc.response["Error"]["Message"]
        except HTTPException as exc:  # Flask answers one with its own response; so does this
            return exc(environ, start_response)
        status, headers, content = result if len(result) == 3 else (200, {}, result)
        return Response(response=content, status=status, headers=headers)(environ,
                                                                         start_response)


class Server:
    """moto's server on `ip_address:port` in a thread, with the keep-alive handler: the
    same start / stop / get_host_and_port as moto's ThreadedMotoServer."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 5000) -> None:
        self._address = (ip_address, port)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = DirectDynamoDB(DomainDispatcherApplication(create_backend_app))
        server = make_server(*self._address, app, threaded=True,
                             request_handler=KeepAliveHandler)
        server.open_connections = set()  # type: ignore[attr-defined]
        server.accepted = 0  # type: ignore[attr-defined]  # connections, ever
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="moto-server",
                                        daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        """The connections the server has accepted since it started."""
        return int(getattr(self._server, "accepted", 0))

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        with _lock:
            opened = list(server.open_connections)  # type: ignore[attr-defined]
        for conn in opened:  # a kept-alive connection would go on answering otherwise
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
