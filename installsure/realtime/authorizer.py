"""Authorization of one session's requests: static rules, then the membership check.

For a ``member`` rule the domain decides: ``may_subscribe(principal, uri)`` for project
and file topics (a prefix or wildcard subscription is asked about with its URI as
given: ``installsure.project.<id>.`` names the project, ``installsure.project..updated``
names none and is refused), ``project_role`` for presence topics.

Decisions are cached per session (a dashboard subscribes to the same few topics again
and again) and the cache is dropped when the domain says memberships changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed

from installsure.realtime.principal import Principal, ProjectAccess
from installsure.realtime.rules import Rule, deciding_rule
from installsure.realtime.uris import component

#: Topic families whose third component names a project or a file.
_PROJECT_SCOPED = ("installsure.project.", "installsure.presence.")
_FILE_SCOPED = ("installsure.file.",)


def scope_of(uri: str) -> tuple[str, str] | None:
    """``("project", id)`` or ``("file", id)`` for URIs that name one, else None."""
    target = component(uri, 2)
    if target is None:
        return None
    if uri.startswith(_PROJECT_SCOPED):
        return "project", target
    if uri.startswith(_FILE_SCOPED):
        return "file", target
    return None


class SessionAuthorizer:
    """Decides for one session; ``principal`` None is an anonymous session."""

    def __init__(
        self,
        rules: Sequence[Rule],
        access: ProjectAccess,
        principal: Principal | None,
        authrole: str,
    ) -> None:
        self._rules = rules
        self._access = access
        self.principal = principal
        self.authrole = authrole
        self._cache: dict[tuple[str, str, str], bool] = {}

    def forget(self) -> None:
        """Drop cached decisions (memberships changed)."""
        self._cache.clear()

    def cached(self, action: str, uri: str, match: str) -> bool | None:
        return self._cache.get((action, uri, match))

    def authorize(self, action: str, uri: str, match: str = "exact") -> Deferred[bool]:
        key = (action, uri, match)
        known = self._cache.get(key)
        if known is not None:
            return succeed(known)
        d = self._decide(action, uri, match)

        def remember(allowed: bool) -> bool:
            self._cache[key] = allowed
            return allowed

        return d.addCallback(remember)

    def _decide(self, action: str, uri: str, match: str) -> Deferred[bool]:
        rule = deciding_rule(self._rules, self.authrole, action, uri, match)
        if rule is None or rule.decision == "deny":
            return succeed(False)
        if rule.decision == "allow":
            return succeed(True)
        principal = self.principal
        if principal is None:
            return succeed(False)
        if rule.decision == "self":
            return succeed(component(uri, 2) == principal.id)
        scope = scope_of(uri)
        if scope is None:
            return succeed(False)
        _kind, target = scope
        if uri.startswith("installsure.presence."):
            # Presence is not an event topic the domain knows: any project role will do.
            role = self._access.project_role(principal, target)
            return role.addCallback(lambda found: found is not None)
        return self._access.may_subscribe(principal, uri)
