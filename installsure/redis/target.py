"""Where Redis is: a URL (TCP, TLS or unix socket) or a set of Sentinels and a master name.

Kept free of txredisapi (which installs a reactor when imported) so that configuration
code can build and validate targets before anything else happens.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from attrs import field, frozen

_URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://...[?ca=/path/ca.pem] for TLS, "
    "or unix:///path/to/redis.sock[?db=N]"
)


def _bad_url(url: str, why: str) -> ValueError:
    return ValueError(f"invalid Redis URL {_redact(url)!r}: {why}; expected {_URL_FORMS}")


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _parse_db(text: str, url: str) -> int:
    if not text.isdigit():
        raise _bad_url(url, f"database {text!r} is not a non-negative integer")
    return int(text)


@frozen
class RedisTarget:
    """One Redis deployment to connect to.

    Build it with :meth:`from_url`, :meth:`for_unix_socket` or :meth:`for_sentinels`
    rather than by hand; those validate their input.
    """

    host: str | None = None
    port: int = 6379
    unix_socket: str | None = None
    tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    db: int = 0
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    #: PEM file of the CA that signed the server's certificate (rediss:// with a private
    #: CA); None trusts the system's CAs.
    tls_ca_file: str | None = None
    #: The Sentinels' own password (their ``requirepass``), when they ask for one.
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        """Parse ``redis://``, ``rediss://`` or ``unix://`` URLs; ValueError says what is wrong."""
        if not isinstance(url, str) or not url.strip():
            raise _bad_url(str(url), "it is empty")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as e:
            raise _bad_url(url, str(e)) from None
        scheme = parts.scheme.lower()
        password = unquote(parts.password) if parts.password is not None else None
        username = unquote(parts.username) if parts.username else None
        query = parse_qs(parts.query, keep_blank_values=True)
        allowed = {"db", "ca"} if scheme == "rediss" else {"db"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise _bad_url(
                url,
                f"unknown query parameter(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        query_db = query.get("db", [None])[-1]
        ca_file = query.get("ca", [None])[-1]
        if ca_file is not None and not ca_file.startswith("/"):
            raise _bad_url(url, "ca= needs the absolute path of a PEM file")

        if scheme == "unix":
            path = unquote(parts.path)
            if parts.netloc.rpartition("@")[2] or not path.startswith("/"):
                raise _bad_url(url, "a unix socket URL needs an absolute path (unix:///path)")
            db = _parse_db(query_db, url) if query_db is not None else 0
            return cls(unix_socket=path, username=username, password=password, db=db)

        if scheme not in ("redis", "rediss"):
            raise _bad_url(url, f"unknown scheme {parts.scheme!r}")
        if not parts.hostname:
            raise _bad_url(url, "the host is missing")
        if port == 0:
            raise _bad_url(url, "port 0 is not a port one can connect to")
        db_text = parts.path.lstrip("/")
        if db_text and query_db is not None:
            raise _bad_url(url, "the database is given both in the path and as ?db=")
        db_text = db_text or query_db or "0"
        return cls(
            host=parts.hostname,
            port=port or 6379,
            tls=scheme == "rediss",
            username=username,
            password=password,
            db=_parse_db(db_text, url),
            tls_ca_file=ca_file,
        )

    @classmethod
    def for_unix_socket(cls, path: str, *, db: int = 0, password: str | None = None) -> RedisTarget:
        """The embedded redis-server's socket (or any local one)."""
        if not path:
            raise ValueError("the Redis unix socket path is empty")
        if db < 0:
            raise ValueError(f"Redis database must be >= 0, not {db}")
        return cls(unix_socket=str(path), password=password, db=db)

    @classmethod
    def for_sentinels(
        cls,
        sentinels: tuple[tuple[str, int], ...] | list[tuple[str, int]],
        master_name: str,
        *,
        password: str | None = None,
        db: int = 0,
        sentinel_password: str | None = None,
    ) -> RedisTarget:
        """Ask these Sentinels where the master called ``master_name`` is.

        ``password`` is the master's; ``sentinel_password`` the Sentinels' own, for
        Sentinels configured with ``requirepass``."""
        checked: list[tuple[str, int]] = []
        for entry in sentinels:
            try:
                host, port = entry
            except (TypeError, ValueError):
                raise ValueError(
                    f"a Redis sentinel must be a (host, port) pair, not {entry!r}"
                ) from None
            if not isinstance(host, str) or not host:
                raise ValueError(f"Redis sentinel {entry!r} has no host")
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"Redis sentinel {entry!r} has an invalid port (1-65535)")
            checked.append((host, port))
        if not checked:
            raise ValueError("redis.sentinels is empty: list at least one host:port")
        if not master_name:
            raise ValueError("redis.master_name is required when redis.sentinels is set")
        if db < 0:
            raise ValueError(f"Redis database must be >= 0, not {db}")
        return cls(
            sentinels=tuple(checked), master_name=master_name, password=password, db=db,
            sentinel_password=sentinel_password,
        )

    def describe(self) -> str:
        """Where this is, for messages: never includes the password."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"master {self.master_name!r} via sentinel(s) {hosts}"
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"
