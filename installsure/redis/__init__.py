"""Redis for InstallSure.

* ``interfaces``: the protocols the rest of the package codes against (no txredisapi).
* ``target``: ``RedisTarget``, where Redis is (URL, unix socket or Sentinels).
* ``client``: ``RedisService``, the connection service (imports txredisapi, which
  installs a reactor: import it lazily, as tap code does).
* ``embedded``: ``EmbeddedRedisService``, the supervised redis-server child.

Nothing is imported here so that ``installsure.redis.interfaces`` stays cheap to import.
"""
