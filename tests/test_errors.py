"""The gateway's exception tree: what its constructors make of what they are given."""

from __future__ import annotations

import pytest

from kyma.errors import UpstreamError


@pytest.mark.parametrize("error, message", [
    ({"message": "model overloaded", "type": "server_error"}, "model overloaded"),
    ("boom", "boom"),
    ({}, "The upstream provider failed mid-stream."),
    ({"message": ""}, "The upstream provider failed mid-stream."),
])
def test_an_in_band_stream_error_keeps_the_upstreams_words_or_says_it_failed(error, message):
    err = UpstreamError.in_band(error)
    assert type(err) is UpstreamError and err.message == message and err.status == 502
