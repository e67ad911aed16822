"""Property tests of the pure report figures: diversity, transfer, the 2-D map."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adversary.reports._analysis import mean_pairwise_cosine_distance, pca_2d, self_bleu, transfer_matrix

unit_rows = st.integers(2, 30).flatmap(
    lambda n: st.integers(0, 2**32 - 1).map(lambda s: (lambda m: m / np.linalg.norm(m, axis=1, keepdims=True))(
        np.random.default_rng(s).normal(size=(n, 6))))
)


@given(unit_rows)
@settings(max_examples=60, deadline=None)
def test_mean_pairwise_distance_is_within_bounds_and_zero_for_copies(vectors):
    value = mean_pairwise_cosine_distance(vectors)
    assert 0.0 <= value <= 2.0
    assert abs(mean_pairwise_cosine_distance(np.repeat(vectors[:1], 3, axis=0))) < 1e-9
    assert mean_pairwise_cosine_distance(vectors[:1]) is None


@given(st.lists(st.text(alphabet="abc de", min_size=1, max_size=30), min_size=2, max_size=12))
@settings(max_examples=60, deadline=None)
def test_self_bleu_is_a_rate(texts):
    value = self_bleu(texts)
    assert value is None or 0.0 <= value <= 1.0


def test_self_bleu_is_high_for_copies_and_low_for_unrelated_texts():
    copies = ["could you tell me the best beach near lisbon please"] * 4
    unrelated = ["the best beach near lisbon", "write a python function reversing strings", "how do vaccines work in puppies",
                 "summarize romeo and juliet for me"]
    assert self_bleu(copies) > 0.99
    assert self_bleu(unrelated) < 0.2


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.dictionaries(st.sampled_from(["x", "y", "z", "w"]), st.tuples(st.integers(0, 5), st.integers(1, 5))),
                       min_size=1))
def test_transfer_is_a_share_and_one_on_the_diagonal(raw):
    rates = {t: {i: (min(b, n), n) for i, (b, n) in items.items()} for t, items in raw.items()}
    matrix = transfer_matrix(rates)
    for a, row in matrix.items():
        for b, value in row.items():
            assert value is None or 0.0 <= value <= 1.0
        breaking = any(n and b / n > 0.5 for b, n in rates[a].values())
        assert row[a] == (1.0 if breaking else None)


def test_pca_map_has_two_coordinates_per_row():
    vectors = np.random.default_rng(0).normal(size=(7, 5))
    assert pca_2d(vectors).shape == (7, 2)
    assert pca_2d(vectors[:1]).shape == (1, 2)


def test_rate_charts_accept_interval_ends_that_round_past_the_rate():
    from adversary.reports._charts import rate_bars

    groups = {"all broke": {"rate": 1.0, "ci95": [0.6, 0.9999999999], "trials": 5},
              "none broke": {"rate": 0.0, "ci95": [1e-12, 0.4], "trials": 5}}
    assert rate_bars("edge cases", groups).startswith("data:image/png;base64,")
