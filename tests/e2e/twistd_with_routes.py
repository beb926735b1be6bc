"""``twistd`` with test-only routes: ``python -m tests.e2e.twistd_with_routes TWISTD-ARGS``.

Runs twistd's own entry point with the real ``installsure`` plugin, options, config and
service tree, plus one test router (never part of the server itself):

* ``GET /test/slow/{seconds}``: answers 200 ``{"slept": seconds}`` after that long;
* ``POST /test/upload``: answers 200 ``{"received": bytes}`` once the body is in.

The plugin names ``installsure.tap`` and calls its ``makeService``; this replaces that
one function with one that passes the router to ``build_service``.
"""

from __future__ import annotations

import sys
from typing import Any


def make_service(options: Any) -> Any:
    # Imported here, not at the top: they install a reactor, which is twistd's to pick.
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from installsure.http import Router
    from installsure.service import build_service
    from installsure.tap import load_from_options

    router = Router()

    @router.route("GET", "/test/slow/{seconds}", rate_limit=None)
    async def slow(_ctx: Any, seconds: str) -> dict[str, float]:
        await deferLater(reactor, float(seconds), lambda: None)
        return {"slept": float(seconds)}

    @router.route("POST", "/test/upload", rate_limit=None)
    def upload(ctx: Any) -> dict[str, int]:
        return {"received": len(ctx.request.content.read())}

    return build_service(load_from_options(options), options, routers=[router])


def main() -> None:
    from twisted.scripts.twistd import run

    import installsure.tap

    installsure.tap.makeService = make_service  # type: ignore[assignment]
    sys.argv = ["twistd", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
