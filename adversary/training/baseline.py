"""The seed baseline of the hardening experiment: as many training rows as a campaign's export, built from the seeds.

Whether a search's hard negatives are worth training on is only known against the obvious alternative: the
same number of rows made from the seed distractors the search started from, with the same kind of ideal replies
and the same controls. There are usually fewer seeds than hard negatives, so each seed is repeated at its
scenario's other insertion points (the same distractor later in the dialogue is another example of holding
scope) before any placement is used twice. Pure: rows in, rows out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

Row = dict
Messages = list[dict]


def seed_placements(seed_rows: Sequence[Row], prefix: Callable[[str, int], Messages | None],
                    points: Callable[[str], Sequence[int]]) -> list[list[Row]]:
    """For each seed row (an SFT negative: its conversation, the distractor, the ideal reply), the row itself first,
    then the same distractor and ideal reply after each other usable insertion point of its scenario.

    `prefix(scenario_id, point)` is the conversation up to and including that bot turn (None for an unknown
    scenario); `points(scenario_id)` lists the usable insertion points.
    """
    families = []
    for row in seed_rows:
        meta = row.get("metadata", {})
        scenario, own_point = meta.get("scenario_id", ""), meta.get("insertion_point")
        distractor, ideal = row["messages"][-2], row["messages"][-1]
        family = [row]
        for point in points(scenario):
            if point == own_point:
                continue
            messages = prefix(scenario, point)
            if messages is None:
                continue
            family.append({"messages": [*messages, distractor, ideal],
                           "metadata": {**meta, "insertion_point": point, "repeated_from": own_point}})
        families.append(family)
    return families


def matched_rows(families: Sequence[Sequence[Row]], wanted: int, seed: int) -> list[Row]:
    """`wanted` rows drawn round by round: every seed once (in a seeded order), then every seed at a second
    insertion point, and so on; a seed with no placement left is skipped, and rows repeat only when every
    placement has been used."""
    if wanted <= 0 or not families:
        return []
    rng = random.Random(seed)
    order = list(range(len(families)))
    rng.shuffle(order)
    chosen: list[Row] = []
    round_index = 0
    longest = max(len(f) for f in families)
    while len(chosen) < wanted:
        position = round_index % longest
        for index in order:
            family = families[index]
            if position < len(family):
                chosen.append(family[position])
                if len(chosen) == wanted:
                    break
        round_index += 1
    return chosen
