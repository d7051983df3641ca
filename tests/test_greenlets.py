"""Greenlets that serve parts of one request (n choices, the playground's compare) each get a request context."""

from __future__ import annotations

import gevent
import gevent.event
from flask import request

from kyma.greenlets import spawn_in_request


def test_two_greenlets_of_one_request_can_finish_in_any_order(app):
    started = gevent.event.Event()
    jobs = []

    def first():
        started.wait()  # the second has pushed its context by now
        return request.path  # and this one leaves first: it must pop its own context, not the other's

    def second():
        started.set()
        while not jobs[0].dead:
            gevent.sleep(0)
        return request.path

    with app.test_request_context("/v1/chat/completions"):
        jobs += [spawn_in_request(first), spawn_in_request(second)]
        gevent.joinall(jobs, raise_error=True)
    assert [job.value for job in jobs] == ["/v1/chat/completions"] * 2
