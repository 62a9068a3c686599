"""Who may see which dashboard: password hashes, sessions, the access rule, and
the client's address behind trusted proxies. Pure functions, no Tornado.

A viewer is known by a name and by how it proved it (`kind`): a kiosk token, a
password, or a header set by an authenticating proxy. A dashboard accepts only
viewers of its own kind (a kiosk link for the lobby screen does not open the
password-protected dashboards), optionally only some names of that kind.

Scripts and servers read with a bearer token from [auth] readers (kind READER):
no session, no cookie; the token's own rule lists the dashboards it may read, and
it is taken from the Authorization header of each request.

Sessions (kiosk and password viewers) live in a cookie signed with [auth] secret.
Besides the name and an expiry, a session carries a fingerprint of the
credential it came from: changing a user's password or a kiosk token in the
config, or removing it, ends every session made with the old one at the next
check, without a list of sessions on the server.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

PUBLIC, TOKEN, PASSWORD, PROXY = "public", "token", "password", "proxy"
MODES = (PUBLIC, TOKEN, PASSWORD, PROXY)
READER = "reader"  # a script's read token ([auth] readers): not a dashboard mode
EVERY_DASHBOARD = "*"  # in a reader's dashboards: all of them
SESSION_KINDS = (TOKEN, PASSWORD)  # the modes whose viewers hold a session cookie

# scrypt's cost for new hashes: n=2**17, r=8, p=1, OWASP's Password Storage Cheat Sheet
# minimum (128 MiB, about 0.3 s here). A stored hash carries its own cost, so hashes
# made with the earlier n=2**14 still verify.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
PASSWORD_MIN = 8  # characters; hash-password refuses shorter ones
SCRYPT_MAX_MEMORY = 256 * 1024**2  # a hash asking for more is refused by the config
_SALT_BYTES, _KEY_BYTES = 16, 32


# --- password hashes: "scrypt$n$r$p$salt$key" ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.key)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _memory(n: int, r: int) -> int:
    return 128 * n * r


def _derive(password: str, n: int, r: int, p: int, salt: bytes, length: int) -> bytes:
    # surrogateescape: a password read from a terminal in another encoding still hashes
    secret = password.encode("utf-8", "surrogateescape")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_memory(n, r) + 1024**2)


def parse_password_hash(text: str) -> PasswordHash:
    """The parts of a stored hash; ValueError when it is not one this module made or
    could check in reasonable time and memory."""
    parts = text.split("$") if isinstance(text, str) else []
    if (
        len(parts) != 6
        or parts[0] != "scrypt"
        or not all(x.isascii() and x.isdigit() and len(x) <= 9 for x in parts[1:4])
    ):
        raise ValueError("not an scrypt hash")
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or _memory(n, r) > SCRYPT_MAX_MEMORY:
        raise ValueError("scrypt parameters out of range")
    try:
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("salt or key is not base64") from None
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("salt or key too short")
    return PasswordHash(n, r, p, salt, key)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = os.urandom(_SALT_BYTES)
    return PasswordHash(n, r, p, salt, _derive(password, n, r, p, salt, _KEY_BYTES)).encode()


def verify_password(password: str, encoded: str | None, stand_in: str | None = None) -> bool:
    """Whether `password` matches; an unknown user (None) is checked against `stand_in`
    (another user's hash: the same scrypt cost) and refused, so that timing does not
    tell which user names exist."""
    other = encoded if encoded is not None else stand_in
    stored = parse_password_hash(other) if other is not None else _DUMMY
    derived = _derive(password, stored.n, stored.r, stored.p, stored.salt, len(stored.key))
    return hmac.compare_digest(derived, stored.key) and encoded is not None


_DUMMY = PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\0" * _SALT_BYTES, b"\0" * _KEY_BYTES)


class AuthSettings(Protocol):
    """What the rules here read of the config's [auth] (config.AuthConfig)."""

    @property
    def secret(self) -> str: ...
    @property
    def session_lifetime(self) -> float: ...
    @property
    def tokens(self) -> Mapping[str, str]: ...
    @property
    def users(self) -> Mapping[str, str]: ...


class Dashboards(Protocol):
    """A config as the rules here read it: its dashboards, each with an `auth` mode,
    optional `users` and its `widgets`."""

    @property
    def dashboards(self) -> Sequence[Any]: ...


# --- viewers and sessions ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Viewer:
    name: str
    kind: str  # token, password or proxy
    expires: float | None = None  # epoch seconds; None: no session (a proxy's viewer, a reader)
    fingerprint: str = ""
    reads: tuple[str, ...] = ()  # a reader's dashboards (EVERY_DASHBOARD: all)


def credential_fingerprint(secret: str, kind: str, credential: str) -> str:
    """A short tag of the credential a session came from (the token, the password
    hash): not the credential, and useless without the secret."""
    message = f"{kind}\0{credential}".encode("utf-8", "surrogateescape")
    mac = hmac.new(secret.encode("utf-8", "surrogateescape"), message, hashlib.sha256)
    return _b64(mac.digest()[:16])


def encode_session(viewer: Viewer) -> str:
    return json.dumps(
        {"n": viewer.name, "k": viewer.kind, "e": int(viewer.expires or 0), "f": viewer.fingerprint},
        separators=(",", ":"),
    )


def decode_session(text: str | bytes | None) -> Viewer | None:
    """The session in a cookie value whose signature was already checked; None when
    it is not one (an older format, say)."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    name, kind, expires, fingerprint = data.get("n"), data.get("k"), data.get("e"), data.get("f")
    if (
        not isinstance(name, str)
        or kind not in SESSION_KINDS
        or not isinstance(fingerprint, str)
        or not isinstance(expires, int)
        or isinstance(expires, bool)
    ):
        return None
    return Viewer(name, kind, float(expires), fingerprint)


def credential_of(auth: AuthSettings, viewer: Viewer) -> str | None:
    """What the viewer's session was made from, as the config has it now; None when
    that name is gone."""
    table = auth.tokens if viewer.kind == TOKEN else auth.users if viewer.kind == PASSWORD else {}
    return table.get(viewer.name)


def new_session(auth: AuthSettings, kind: str, name: str, now: float) -> Viewer:
    credential = credential_of(auth, Viewer(name, kind)) or ""
    return Viewer(name, kind, now + auth.session_lifetime, credential_fingerprint(auth.secret, kind, credential))


def session_valid(auth: AuthSettings, viewer: Viewer, now: float) -> bool:
    """Not expired, and the credential it was made from is still configured, unchanged."""
    if viewer.expires is None or now >= viewer.expires or not auth.secret:
        return False
    credential = credential_of(auth, viewer)
    if credential is None:
        return False
    return hmac.compare_digest(viewer.fingerprint, credential_fingerprint(auth.secret, viewer.kind, credential))


def match_token(tokens: Mapping[str, str], offered: str | bytes) -> str | None:
    """The name of the configured token equal to `offered`, or None: the one place where
    a secret a client sends (a push token, a kiosk token, the metrics token) is checked.

    `offered` is text (UTF-8, as a query argument arrives) or the bytes as sent (a
    header). Every token is compared, in constant time, even after a match: how long
    this takes must not tell which token (or how much of one) was right."""
    raw = offered if isinstance(offered, bytes) else offered.encode("utf-8", "surrogateescape")
    found = None
    for name, token in tokens.items():
        # surrogateescape gives back the raw bytes of an environment variable that was not UTF-8
        if hmac.compare_digest(raw, token.encode("utf-8", "surrogateescape")):
            found = name
    return found


def reader_fingerprint(token: str) -> str:
    """Tells whether a reader's token changed on a reload, without keeping the token."""
    return hashlib.sha256(f"reader\0{token}".encode("utf-8", "surrogateescape")).hexdigest()


def reader_of(readers: Mapping[str, Any], offered: str | bytes) -> Viewer | None:
    """The reader whose token (readers: name -> an object with `token` and `dashboards`)
    is `offered`, or None; compared through match_token only."""
    name = match_token({name: reader.token for name, reader in readers.items()}, offered)
    if name is None:
        return None
    reader = readers[name]
    return Viewer(name, READER, fingerprint=reader_fingerprint(reader.token), reads=tuple(reader.dashboards))


def reader_now(readers: Mapping[str, Any], viewer: Viewer) -> Viewer | None:
    """A reader as the config has it now (its dashboards may have changed); None when its
    name is gone or its token changed."""
    reader = readers.get(viewer.name)
    if reader is None or not hmac.compare_digest(reader_fingerprint(reader.token), viewer.fingerprint):
        return None
    return dataclasses.replace(viewer, reads=tuple(reader.dashboards))


# --- the rule ---------------------------------------------------------------------------
# `viewers`: each identity a request carries, by kind (a session, a proxy's user).


def may_see(dashboard: object, viewers: Mapping[str, Viewer]) -> bool:
    mode: str = getattr(dashboard, "auth", PUBLIC)
    if mode == PUBLIC:
        return True
    reader = viewers.get(READER)
    if reader is not None and (getattr(dashboard, "id", None) in reader.reads or EVERY_DASHBOARD in reader.reads):
        return True
    viewer = viewers.get(mode)
    if viewer is None:
        return False
    users: tuple[str, ...] | None = getattr(dashboard, "users", None)
    return users is None or viewer.name in users


def visible_dashboards(config: Dashboards, viewers: Mapping[str, Viewer]) -> tuple[Any, ...]:
    return tuple(d for d in config.dashboards if may_see(d, viewers))


def widget_visible(config: Dashboards, widget_id: str, viewers: Mapping[str, Viewer]) -> bool:
    """On a dashboard the viewer may see. A widget on no dashboard is shown only while
    every dashboard is public: with authentication in use, nothing is shown by accident."""
    placed = [d for d in config.dashboards if widget_id in d.widgets]
    if not placed:
        return all(getattr(d, "auth", PUBLIC) == PUBLIC for d in config.dashboards)
    return any(may_see(d, viewers) for d in placed)


def needed_kinds(dashboards: Iterable[object]) -> set[str]:
    return {getattr(d, "auth", PUBLIC) for d in dashboards} - {PUBLIC}


# --- addresses behind proxies -------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """ "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"; ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # ::ffff:10.0.0.1 is 10.0.0.1 arriving on an IPv6 socket
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def is_trusted(address: str, networks: Iterable[Network]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, networks: tuple[Network, ...]) -> str:
    """The client's address: the direct peer, unless the peer is a trusted proxy;
    then X-Forwarded-For is read from the right, past every trusted hop, and the first
    address not trusted is the client. Entries left of it were written by the
    client itself and count for nothing."""
    if not networks or not forwarded_for or not is_trusted(peer, networks):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            break  # garbage from a hop we trust no further: the last good address stands
        client = str(address)
        if not any(address in network for network in networks):
            break
    return client


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback
