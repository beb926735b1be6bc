"""Redis for InstallSure.

* ``interfaces``: the protocols the rest of the package codes against (no txredisapi).
* ``target``: ``RedisTarget``, where Redis is (URL, unix socket or Sentinels).
* ``client``: ``RedisService``, the connection service (imports txredisapi, which
  installs a reactor: import it lazily, as tap code does).
* ``embedded``: ``EmbeddedRedisService``, the supervised redis-server child.
* ``embedded_checks``: finding its binary, checking its data directory, probing its
  socket.
* ``settings``: ``RedisSettings``, the ``redis`` section of the configuration.

Nothing is imported here so that ``installsure.redis.interfaces`` stays cheap to import.
"""
