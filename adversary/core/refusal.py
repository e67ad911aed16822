"""Surface patterns of refusals and redirects, shared by importers and the judges.

These are a signal, not a verdict: the judges combine them with embedding similarity.
"""

from __future__ import annotations

import re

_REFUSAL_PATTERNS = [
    r"\b(i'?m|i am) (sorry|afraid)\b",
    r"\bi (can(no|')?t|cannot|am not able to|'m not able to|am unable to|'m unable to|won'?t) "
    r"(help|assist|provide|discuss|answer|give|talk|offer|comment|advise|share|do that|go into|tutor|recommend|"
    r"forecast|predict|interpret|diagnose|speculate|tell you|write|support)",
    r"\b(outside|beyond|out of) (of )?(my|the) (scope|expertise|area|remit|purpose)",
    r"\b(not|isn'?t) (something|a topic|a question) (i|that i) (can|am able to)",
    r"\bi('m| am) (only )?(here|designed|able|built|meant) to (only )?(help|assist|discuss|answer)",
    r"\bi can only (help|assist|discuss|answer|talk|provide)",
    r"\b(let'?s|let us) (get|go|come|steer|return) back\b",
    r"\b(back|return) to (your|our|the) (question|topic|task|booking|order|account|plan|policy)",
    r"\b(please|you (may|might|should)) (consult|contact|speak (with|to)|reach out to|talk to) (a|an|your)\b",
    r"\bi (don'?t|do not) have (access|information|the ability)",
    r"\b(unable|not able) to (help|assist|provide|discuss)",
    r"\b(i'?m|i am) (not able|unable|not allowed|not permitted) to\b",
]
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS), re.IGNORECASE)


def refusal_markers(text: str) -> list[str]:
    """Refusal or redirect phrases found in `text`, in order."""
    return [m.group(0) for m in _REFUSAL_RE.finditer(text.replace("\u2019", "'"))]


def looks_like_refusal(text: str) -> bool:
    """True when the opening of `text` declines or redirects."""
    opening = " ".join(text.split()[:40])
    return bool(refusal_markers(opening))
