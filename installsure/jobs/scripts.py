"""The Lua scripts: every state change of a job is one of them, run atomically.

Each script is a file of ``installsure/jobs/lua/`` whose header names its KEYS and ARGV
and what it returns; ``common.lua`` holds the helpers and is put in front of every
script when it is loaded (Redis runs one self-contained text per script).

Every script gets ``KEYS[1]``, the queue's base key ``{<prefix>q:<queue>}``; all other
keys are derived from it and share its hash tag, so a queue lives in one Redis Cluster
slot. Times come from Redis' own clock (TIME), so nodes with skewed clocks agree on
leases and due times. Layout of the keys below ``b = KEYS[1]``:

    b:job:<id>  hash: type data opts v priority state created ready attempts stalls
                token finished progress result error errors uniq idem stalled_token
                (token: the lease token whose outcome the job took; stalled_token:
                the lease that lapsed once too often, for a job dead of stalls)
    b:leases    hash id → lease token of every active job (the fence). A token reads
                "<worker>|<claimed at ms>|<random>". The job hash is not written when a
                job is claimed (its state field still says waiting): readers take
                "active" from here, which saves a write per job on the hottest path.
    b:wait      zset id → rank (ready time in ms + priority * aging; lowest first)
    b:active    zset id → lease deadline (ms)
    b:delayed   zset id → due time (ms)           enqueued with a delay / RetryLater
    b:retry     zset id → due time (ms)           failed, waiting for the next attempt
    b:completed zset id → finish time (ms)        bounded by retention
    b:dead      zset id → finish time (ms)        bounded by retention
    b:meta      hash: paused; hold (ms: no stall is counted before it, set after an
                outage) and run_id (of the Redis that answered the last sweep: another
                one means a restart or failover, which is an outage)
    b:unique    hash unique key → id of the pending job holding it
    b:idem:<k>  string → job id, expires after the idempotency TTL
    b:marker    list; a worker blocks on it (BLPOP) while the queue is empty
    b:limiter   string counter of the rate-limit window (expires with it)
    b:workers   zset worker id → last heartbeat (ms)
    b:alive:<w> string with a short TTL: the worker is alive
    b:tp        hash minute → jobs completed in that minute (throughput)
    b:ack:<f>   string "<number>\n<answer JSON>": the last report (complete or fail)
                of result flusher <f>, so a report sent again after a lost reply gets
                the same answer; expires after the outage grace
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from installsure.redis.interfaces import LuaScript, RedisCommands

SCRIPT_NAMES = (
    "enqueue", "claim", "complete", "fail", "heartbeat", "sweep", "release", "progress",
    "counts", "list", "retry", "retry_dead", "remove", "purge",
)
_HELPERS = "common"


def _read(name: str) -> str:
    return resources.files("installsure.jobs").joinpath("lua", f"{name}.lua").read_text("utf-8")


@cache
def script_source(name: str) -> str:
    """The text Redis runs for script ``name``: the helpers, then the script."""
    if name not in SCRIPT_NAMES:
        raise ValueError(f"no job script is called {name!r}; there are {', '.join(SCRIPT_NAMES)}")
    return _read(_HELPERS) + "\n" + _read(name)


class Scripts:
    """Every job script, registered once per Redis client."""

    def __init__(self, redis: RedisCommands) -> None:
        def register(name: str) -> LuaScript:
            return redis.script(f"jobs.{name}", script_source(name))

        self.enqueue = register("enqueue")
        self.claim = register("claim")
        self.complete = register("complete")
        self.fail = register("fail")
        self.heartbeat = register("heartbeat")
        self.sweep = register("sweep")
        self.release = register("release")
        self.progress = register("progress")
        self.counts = register("counts")
        self.list = register("list")
        self.retry = register("retry")
        self.retry_dead = register("retry_dead")
        self.remove = register("remove")
        self.purge = register("purge")

    def all(self) -> list[LuaScript]:
        return [getattr(self, name) for name in SCRIPT_NAMES]
