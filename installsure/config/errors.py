"""What a configuration that cannot be used reports: every problem, each with its source."""

from __future__ import annotations

from attrs import frozen


@frozen
class ConfigProblem:
    key: str
    """Dotted key, e.g. ``http.listen``."""
    source: str
    """Where the value came from: the file, the environment variable or the option."""
    message: str

    def __str__(self) -> str:
        return f"{self.key} ({self.source}): {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        lines = [
            f"installsure: the configuration is not valid ({count} "
            f"problem{'s' if count != 1 else ''}):"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append("See etc/installsure.toml for every key, its default and its variable.")
        return "\n".join(lines)
