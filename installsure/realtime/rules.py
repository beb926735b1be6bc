"""Static authorization rules: per role and URI, the most specific one decides.

A rule is five words: ``ROLES ACTIONS URI MATCH DECISION``, for example
``admin|manager subscribe installsure.queue. prefix allow``.

* ROLES: ``|``-separated authroles, or ``*`` for any.
* ACTIONS: ``|``-separated, among ``subscribe``, ``publish``, ``call``.
* URI and MATCH: the URIs the rule covers (``exact``, ``prefix`` or ``wildcard``, as
  for subscriptions). A request covers the URI it names, taken literally: a prefix
  subscription to ``installsure.project.p1.`` is covered by the prefix rule
  ``installsure.project.``; a wildcard subscription's empty components are matched
  only by a wildcard rule's empty components.
* DECISION: ``allow``, ``deny``, ``member`` (allowed when the caller may see the
  project or file the URI names, asked of the domain's membership check) or ``self``
  (allowed when the URI's third component is the caller's own user id, as in
  ``installsure.user.<userId>.notification``).

Which rule decides: among the rules that cover the request, those naming the caller's
role beat ``*`` ones; then ``exact`` beats ``prefix`` beats ``wildcard``; then the longer
URI wins (for wildcards, the one with more non-empty components). No rule: denied.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

from installsure.realtime.uris import EXACT, MATCH_POLICIES, PREFIX, WILDCARD, wildcard_matches

ACTIONS = ("subscribe", "publish", "call")
DECISIONS = ("allow", "deny", "member", "self")

#: The contract's topic table (who may subscribe to what; admins see every project, so
#: their wildcard subscriptions work too), presence publishing for project members, and
#: the meta API for admins.
DEFAULT_RULES: tuple[str, ...] = (
    "* subscribe installsure.project. prefix member",
    "* subscribe installsure.file. prefix member",
    "* subscribe installsure.user. prefix self",
    "* subscribe|publish installsure.presence. prefix member",
    "admin subscribe installsure.project. prefix allow",
    "admin subscribe installsure.file. prefix allow",
    "admin|manager subscribe installsure.queue. prefix allow",
    "admin subscribe installsure.system. prefix allow",
    "admin subscribe|call wamp. prefix allow",
)


class RuleError(ValueError):
    """A rule that cannot be parsed; the message says which and why."""


@frozen
class Rule:
    roles: frozenset[str] | None  # None: any role
    actions: frozenset[str]
    uri: str
    match: str
    decision: str

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.uri.split("."))

    def covers(self, role: str, action: str, uri: str, match: str) -> bool:
        if self.roles is not None and role not in self.roles:
            return False
        if action not in self.actions:
            return False
        if self.match == EXACT:
            return match == EXACT and uri == self.uri
        if self.match == PREFIX:
            return uri.startswith(self.uri)
        return wildcard_matches(self.components, tuple(uri.split(".")))

    def rank(self) -> tuple[int, int, int]:
        """Higher is more specific (see the module docstring)."""
        by_role = 1 if self.roles is not None else 0
        if self.match == EXACT:
            return by_role, 2, len(self.uri)
        if self.match == PREFIX:
            return by_role, 1, len(self.uri)
        return by_role, 0, sum(1 for part in self.components if part)


def parse_rule(text: str) -> Rule:
    words = text.split()
    if len(words) != 5:
        raise RuleError(
            f"rule {text!r} must have five words: ROLES ACTIONS URI MATCH DECISION, "
            "e.g. 'admin|manager subscribe installsure.queue. prefix allow'"
        )
    roles_word, actions_word, uri, match, decision = words
    roles = None if roles_word == "*" else frozenset(roles_word.split("|"))
    actions = frozenset(actions_word.split("|"))
    unknown = sorted(actions - set(ACTIONS))
    if unknown:
        raise RuleError(
            f"rule {text!r}: unknown action(s) {', '.join(unknown)}; "
            f"use {', '.join(ACTIONS)} joined by '|'"
        )
    if match not in MATCH_POLICIES:
        raise RuleError(f"rule {text!r}: match must be one of {', '.join(MATCH_POLICIES)}")
    if decision not in DECISIONS:
        raise RuleError(f"rule {text!r}: decision must be one of {', '.join(DECISIONS)}")
    if match == WILDCARD and "" not in uri.split("."):
        raise RuleError(f"rule {text!r}: a wildcard URI needs an empty component ('a..b')")
    return Rule(roles, actions, uri, match, decision)


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    """Every rule parsed; all problems reported in one error."""
    rules, problems = [], []
    for text in texts:
        try:
            rules.append(parse_rule(text))
        except RuleError as e:
            problems.append(str(e))
    if problems:
        raise RuleError("; ".join(problems))
    return tuple(rules)


def deciding_rule(
    rules: Iterable[Rule], role: str, action: str, uri: str, match: str
) -> Rule | None:
    """The most specific rule covering the request, or None."""
    best: Rule | None = None
    for rule in rules:
        if rule.covers(role, action, uri, match) and (best is None or rule.rank() > best.rank()):
            best = rule
    return best
