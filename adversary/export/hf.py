"""The SFT and DPO exports as Hugging Face `datasets.DatasetDict`s saved to disk, with typed features."""

from __future__ import annotations

from pathlib import Path

CHAT = [{"role": "string", "content": "string"}]
METADATA = {
    "kind": "string", "item_id": "string", "scenario_id": "string", "style": "string", "break_rate": "float64",
    "ci95": ["float64"], "breaks": "int64", "trials": "int64", "expected_break_rate": "float64",
    "targets_broken": ["string"], "insertion_point": "int64",
    "lineage": {"operator": "string", "generation": "int64", "parents": ["string"]},
    "judge": "string", "split": "string",
}
"""Every metadata field of a negative; control rows leave the negative-only ones empty (null)."""
LAYOUTS = {"sft": {"messages": CHAT, "metadata": METADATA},
           "dpo": {"prompt": CHAT, "chosen": CHAT, "rejected": CHAT, "metadata": METADATA}}


def _feature(spec):
    from datasets import Value

    if isinstance(spec, str):
        return Value(spec)
    if isinstance(spec, list):
        return [_feature(spec[0])]
    return {key: _feature(value) for key, value in spec.items()}


def features(fmt: str):
    """The `datasets.Features` of one format's rows."""
    from datasets import Features

    return Features({key: _feature(value) for key, value in LAYOUTS[fmt].items()})


def _conform(value, spec):
    """`value` with every field `spec` names (missing ones None) and no others, so every row fits the features."""
    if isinstance(spec, dict):
        value = value or {}
        return {key: _conform(value.get(key), sub) for key, sub in spec.items()}
    if isinstance(spec, list):
        return None if value is None else [_conform(v, spec[0]) for v in value]
    if value is None:
        return None
    return float(value) if spec == "float64" else int(value) if spec == "int64" else str(value)


def save_dataset_dict(fmt: str, splits: dict[str, list[dict]], folder: Path, card: str) -> None:
    """Save `splits` (split name to rows) of format `fmt` to `folder` with `save_to_disk`, and the card as README.md."""
    import datasets

    spec = LAYOUTS[fmt]
    schema = features(fmt)
    data = datasets.DatasetDict({name: datasets.Dataset.from_list([_conform(row, spec) for row in rows], features=schema)
                                 for name, rows in splits.items()})
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        data.save_to_disk(str(folder))
    finally:
        if enabled:
            datasets.enable_progress_bars()
    (folder / "README.md").write_text(card, encoding="utf-8")
