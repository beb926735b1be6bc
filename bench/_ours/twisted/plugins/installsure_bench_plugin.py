"""twistd plugin of the benchmark: ``twistd -n installsure-bench`` (PYTHONPATH=bench/_ours).

The same server as ``twistd -n installsure``, with one difference: requests authenticate
with HS256 access tokens (bench_auth.py) instead of the operator token, until the
server's own token verification exists. Benchmarks only.
"""

from twisted.application.service import ServiceMaker

installsure_bench = ServiceMaker(  # type: ignore[no-untyped-call]
    "InstallSure (benchmark)",
    "bench_tap",
    "InstallSure with the benchmark's access-token authenticator",
    "installsure-bench",
)
