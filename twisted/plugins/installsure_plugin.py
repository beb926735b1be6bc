"""twistd plugin: ``twistd -n installsure``.

Only names ``installsure.tap`` as a string, so importing the plugin installs no reactor
and ``twistd --reactor=asyncio installsure`` works.
"""

from twisted.application.service import ServiceMaker

installsure = ServiceMaker(  # type: ignore[no-untyped-call]
    "InstallSure",
    "installsure.tap",
    "InstallSure construction project management server (HTTP API, background jobs)",
    "installsure",
)
