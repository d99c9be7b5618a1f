"""Start-up options of `manage.py vpp_sandbox` / `python -m vpp.sandbox`."""

from __future__ import annotations

import argparse

import pytest

from vpp.sandbox import cli


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return vars(parser.parse_args(list(argv)))


def test_it_turns_command_options_into_sandbox_options():
    options = cli.build_options(
        parse("--page-size", "7", "--max-users", "10", "--rps", "5", "--enforce-rps", "--pending-seconds", "0.5")
    )
    assert (options.page_size, options.limits["maxUsers"], options.limits["maxRequestPerSecond"]) == (7, 10, 5)
    assert (options.rps_limit, options.pending_seconds) == (5, 0.5)
    assert options.limits["maxAssets"] == 25


def test_it_leaves_the_rate_limit_off_unless_enforced():
    assert cli.build_options(parse("--rps", "5")).rps_limit == 0


def test_it_takes_any_option_as_json():
    options = cli.build_options(
        parse("--options", '{"fail_next": 2, "retry_after_form": "http-date"}', "--limits", '{"maxAssets": 3}')
    )
    assert (options.fail_next, options.retry_after_form, options.limits["maxAssets"]) == (2, "http-date", 3)


def test_it_refuses_bad_options():
    with pytest.raises(ValueError, match="unknown option"):
        cli.build_options(parse("--options", '{"nope": 1}'))
    with pytest.raises(ValueError, match="page_size"):
        cli.build_options(parse("--page-size", "0"))
