"""Quiet Hugging Face loading: transformers, peft, TRL and datasets report bars and deprecations on every load."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_hugging_face(*, every_warning: bool = False, datasets_bars: bool = False) -> Iterator[None]:
    """Inside the block transformers logs errors only and draws no progress bars (nor datasets' with
    `datasets_bars`); FutureWarnings and peft's "Could not find a config file" are ignored, every warning with
    `every_warning` (TRL's training set-up warns about settings a user did not choose)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets = None
    if datasets_bars:
        import datasets

        bars_were_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            if every_warning:
                warnings.simplefilter("ignore")
            else:
                warnings.simplefilter("ignore", FutureWarning)
                warnings.filterwarnings("ignore", message=".*Could not find a config file.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
        if datasets is not None and bars_were_on:
            datasets.enable_progress_bars()
