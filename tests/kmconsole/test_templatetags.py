from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kmconsole.templatetags.console import ago, stamp
from kmconsole.views import _duration

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(hours=5, minutes=59), "5 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=16), "2 weeks ago"),
        (timedelta(days=65), "2 months ago"),
        (timedelta(days=800), "2 years ago"),
        (timedelta(days=-1), "just now"),  # a clock ahead of ours
    ],
)
def test_it_says_how_long_ago_in_one_unit(delta, expected):
    assert ago(NOW - delta, NOW) == expected


def test_it_leaves_missing_times_empty():
    assert ago(None) == "" and stamp(None) == ""


def test_it_stamps_in_the_console_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert stamp(NOW) == "2026-11-28 13:00 CET"


@pytest.mark.parametrize(
    ("seconds", "text"), [(28800, "8 hours"), (3600, "1 hour"), (5400, "90 minutes"), (60, "1 minute")]
)
def test_it_words_the_idle_timeout(seconds, text):
    assert _duration(seconds) == text


def test_every_time_is_shown_in_the_consoles_zone_with_its_name(settings):
    from kmconsole.templatetags.console import clock, since, when

    settings.TIME_ZONE = "Europe/Berlin"
    assert stamp(NOW) == "2026-11-28 13:00 CET"
    assert clock(NOW) == "13:00:00 CET"
    assert stamp(NOW, "America/New_York") == "2026-11-28 07:00 EST"
    assert when(NOW) == '<time datetime="2026-11-28T12:00:00+00:00">2026-11-28 13:00 CET</time>'
    assert 'title="2026-11-28 13:00 CET"' in since(NOW)
