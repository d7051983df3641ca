"""URL builders compiled once per pytest process instead of once per test app.

werkzeug compiles two URL-building functions from a syntax tree for every route of every app, which
is most of what create_app costs once its modules are imported, and the tests create hundreds of apps
with the same routes. A builder depends only on its rule's text, its parsed parts, its defaults and
whether it appends unknown arguments (the rule it serves arrives as an argument when it is called), so
the first one compiled serves every equal rule after it.
"""

from __future__ import annotations

from werkzeug.routing.rules import Rule

_builders: dict[tuple, object] = {}
ORIGINAL = Rule.__dict__["_compile_builder"]  # a KeyError here: werkzeug changed, see above


def install() -> None:
    """Memoize werkzeug's Rule._compile_builder for this process (a no-op when already done)."""
    if Rule._compile_builder is not ORIGINAL:
        return

    def memoized(rule: Rule, append_unknown: bool = True):
        # Converters by class and settings (a default value is converted into the builder's code).
        converters = repr([(name, type(c), sorted((k, v) for k, v in vars(c).items() if k != "map"))
                           for name, c in sorted(rule._converters.items())])
        key = (rule.rule, tuple(rule._trace), repr(sorted((rule.defaults or {}).items())), append_unknown, converters)
        if key not in _builders:
            _builders[key] = ORIGINAL(rule, append_unknown)
        return _builders[key]

    Rule._compile_builder = memoized
