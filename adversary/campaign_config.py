"""Campaign configs from YAML files and flags, checked field by field with errors naming the file, line and field."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pydantic
import yaml

from adversary.campaign import CampaignConfig
from adversary.corpus.project import read_text, yaml_line
from adversary.errors import ConfigError

_FIELDS = {f.name for f in fields(CampaignConfig)}


_CONFIG_TYPES = pydantic.TypeAdapter(CampaignConfig)


def build_config(values: dict, path: Path | None = None, root: yaml.Node | None = None) -> CampaignConfig:
    """A checked CampaignConfig from config-file values and flags: every field's type (pydantic) and range
    (`CampaignConfig.validate`); an error names the file, the line of the offending key and the field."""
    try:
        config = _CONFIG_TYPES.validate_python(values)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "config"
        line = yaml_line(root, tuple(error["loc"])) if root is not None else None
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        raise ConfigError(f"{where}{field}: {error['msg']}") from None
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    return config


def load_config_file(path: Path) -> tuple[dict, yaml.Node | None]:
    """Config values from a YAML file, checked against CampaignConfig's field names, and the YAML node tree
    (for line numbers in later errors)."""
    try:
        text = read_text(path)
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    except Exception as exc:
        raise ConfigError(" ".join(str(exc).split())) from None
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    unknown = sorted((set(data) - _FIELDS), key=str)
    if unknown:
        line = yaml_line(root, (unknown[0],))
        raise ConfigError(f"{path}:{line}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_FIELDS))}")
    return data, root
