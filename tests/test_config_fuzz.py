"""Hypothesis fuzzes the campaign config loader: any file gives a valid config or one ConfigError line naming it."""

from __future__ import annotations

from dataclasses import fields

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adversary.campaign import CampaignConfig
from adversary.campaign_config import build_config, load_config_file
from adversary.errors import ConfigError

FIELDS = [f.name for f in fields(CampaignConfig)]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 5000), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["novelty", "tangential", "local/smollm2", "1500", "0.5"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
configs = st.dictionaries(st.sampled_from(FIELDS + ["budget", "strategy", "7"]), values, max_size=6)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load(path):
    data, root = load_config_file(path)
    return build_config(data, path, root)


def _assert_one_clear_line(exc: ConfigError, path) -> None:
    message = str(exc)
    assert str(path) in message and "\n" not in message and "Traceback" not in message


@given(configs)
@FUZZ
def test_any_mapping_builds_a_valid_config_or_raises_one_config_error(tmp_path, data):
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        config = _load(path)
    except ConfigError as exc:
        _assert_one_clear_line(exc, path)
    else:
        config.validate()
        assert isinstance(config.targets, tuple) and all(isinstance(t, str) for t in config.targets)
        assert isinstance(config.budget_calls, int) and config.budget_calls >= 1


@given(st.binary(max_size=300))
@FUZZ
def test_arbitrary_bytes_never_crash_the_config_loader(tmp_path, data):
    path = tmp_path / "campaign.yaml"
    path.write_bytes(data)
    try:
        _load(path)
    except ConfigError as exc:
        _assert_one_clear_line(exc, path)


@pytest.mark.parametrize("text, expected", [
    ("budget_calls: lots\n", "campaign.yaml:1: budget_calls: Input should be a valid integer"),
    ("seed: 1\ntargets: 5\n", "campaign.yaml:2: targets"),
    ("seed: 1\n\nbudget: 3\n", "campaign.yaml:3: unknown key 'budget'"),
    ("temperature: 7\n", "temperature must be between 0 and 2"),
    ("strategies: [tangential, telepathy]\n", "unknown strategy 'telepathy'"),
    ("budget_usd: .nan\n", "budget_usd"),
])
def test_config_errors_name_the_line_and_field(tmp_path, text, expected):
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        _load(path)
    assert expected in str(caught.value)
