"""A plain HTTP client for tests: no redirects followed, cookies kept like a browser
would (per name), an optional source address (127.0.0.2 is another client to the
server), raw headers and bodies."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urlencode


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []

    def cookie(self, name: str) -> str | None:
        """The whole Set-Cookie line of that cookie (attributes included)."""
        return next((c for c in self.cookies() if c.split("=", 1)[0] == name), None)


@dataclass
class WebClient:
    port: int
    source: str | None = None
    jar: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    async def get(self, path: str, headers: dict | None = None) -> Reply:
        return await self.request("GET", path, headers)

    async def post_form(self, path: str, fields: dict, headers: dict | None = None, *, xsrf: bool = True) -> Reply:
        fields = dict(fields)
        if xsrf and "_xsrf" in self.jar:
            fields["_xsrf"] = self.jar["_xsrf"]
        body = urlencode(fields).encode()
        return await self.request(
            "POST", path, {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}, body
        )

    async def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None) -> Reply:
        sent = {**self.headers, **(headers or {})}
        if self.jar and "Cookie" not in sent:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, self._exchange, method, path, sent, body)
        self._keep_cookies(reply)
        return reply

    def _exchange(self, method: str, path: str, headers: dict, body: bytes | None) -> Reply:
        source = (self.source, 0) if self.source else None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=source)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def _keep_cookies(self, reply: Reply) -> None:
        for line in reply.cookies():
            pair = line.split(";", 1)[0]
            name, _, value = pair.partition("=")
            expired = re.search(r"(?i)max-age=0|expires=[^;]*19[0-9]{2}", line)
            if expired or value in ("", '""'):
                self.jar.pop(name.strip(), None)
            else:
                self.jar[name.strip()] = value.strip()


def xsrf_field(html: str) -> str | None:
    match = re.search(r'name="_xsrf" value="([^"]+)"', html)
    return match[1] if match else None
