"""A webhook receiver to try alerts with: prints the title and text of every
notification it is sent (README.md, "Alerts"). Standard library only.

    python3 examples/webhook_receiver.py 9000
"""

import http.server
import json
import sys


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            notification = json.loads(body)
            print(f"{notification['title']}\n{notification['text']}\n", flush=True)
        except (ValueError, KeyError, TypeError):
            print(f"not a notification: {body[:200]!r}\n", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the notifications are what this prints


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
