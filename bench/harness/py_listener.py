"""Python stand-in for bench/tcp_listener.c (used only when gcc is missing): same behaviour.

python py_listener.py PORT [HEALTH_FILE]
"""

from __future__ import annotations

import os
import socket
import sys

OK = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
BAD = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbad!\n"


def main() -> None:
    port = int(sys.argv[1])
    health = sys.argv[2] if len(sys.argv) > 2 else None
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(1.0)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 2048:
                    chunk = conn.recv(2048)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(OK if health is None or os.path.exists(health) else BAD)
            except OSError:
                pass


if __name__ == "__main__":
    main()
