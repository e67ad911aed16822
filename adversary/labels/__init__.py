"""Hand labels of replies: the rows annotators write and judges are measured and trained on.

Public names:
    LabelRow (one labeled reply, with every annotator's label and the adjudicated one),
    read_labels (strict reader: one clear line naming the row on any problem), read_numbered_labels (the same, with
    each row's line number), append_label,
    annotator_pairs (rows labeled independently by two annotators),
    PoolRow, label_pool (a run's judged replies, ready to be selected and labeled)
"""

from adversary.labels._pool import PoolRow, label_pool
from adversary.labels._rows import LabelRow, annotator_pairs, append_label, read_labels, read_numbered_labels

__all__ = ["LabelRow", "PoolRow", "annotator_pairs", "append_label", "label_pool", "read_labels", "read_numbered_labels"]
