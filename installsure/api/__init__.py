"""InstallSure API: one module per resource, each exposing a ``Router`` of its routes.

Modules declare routes with :class:`installsure.http.Router` (never Klein directly);
the service tree merges the routers and serves them with ``installsure.http.build_site``.
"""
