"""The tests' memo of werkzeug's URL builders builds every route's URL as werkzeug's own compiler does."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter
from werkzeug.routing.rules import Rule

from tests import url_builders


def test_every_route_builds_the_url_werkzeugs_own_builder_builds(app, make_app):
    original = url_builders.ORIGINAL
    rules = list(make_app().url_map.iter_rules())  # a second app: its builders come from the memo
    assert len(rules) > 50 and Rule._compile_builder is not original
    for rule in rules:
        values = {name: 7 if isinstance(rule._converters[name], IntegerConverter) else "a b/c"
                  for name in rule.arguments if name not in (rule.defaults or {})}
        for append_unknown in (False, True):
            ours = rule._compile_builder(append_unknown).__get__(rule, None)
            theirs = original(rule, append_unknown).__get__(rule, None)
            extra = {"page": "2"} if append_unknown else {}
            assert ours(**values, **extra) == theirs(**values, **extra), rule.rule
