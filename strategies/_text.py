"""Text helpers shared by the operators: sentence splitting, anchors from a dialogue, core questions."""

from __future__ import annotations

import re

import numpy as np

from adversary.records import Scenario

_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_ANCHOR_RE = re.compile(
    r"\b(?:[A-Z][a-zA-Z0-9'&-]+(?:\s+[A-Z][a-zA-Z0-9'&-]+)*|\d[\d,.]*\s?(?:USD|EUR|kg|GB|MB|days?|weeks?|credits?|%))"
)
_STOP = {"I", "I'm", "I'll", "I've", "Yes", "No", "Sure", "Please", "Thanks", "Hello", "Hi", "Great", "Done", "You",
         "Your", "The", "This", "That", "If", "Once", "For", "We", "It", "In", "Of", "Okay", "And", "But", "Shall",
         "Would", "Welcome", "Congratulations", "Happy", "Booked", "Standard", "Blinking", "I'd", "Under", "Mon", "Wed"}
_LEADING_BRIDGE_RE = re.compile(
    r"^(since|speaking of|by the way|while|before|now that|that reminds me|also|quick question|so|honestly|"
    r"thinking about|to (understand|check|know|decide|keep)|i'?m asking because|as|after)\b[^,:]{0,90}[,:]\s*",
    re.IGNORECASE,
)


def sentences(text: str) -> list[str]:
    """Sentences of `text`."""
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def anchors(scenario: Scenario) -> list[str]:
    """Named things from the scenario's dialogue (places, products, amounts) a bridge can start from."""
    found: list[str] = []
    for turn in scenario.dialogue:
        for found_match in _ANCHOR_RE.finditer(turn.content):
            match = found_match.group(0)
            before = turn.content[: found_match.start()].rstrip()
            at_sentence_start = not before or before[-1] in ".!?:"
            if at_sentence_start and " " not in match:
                continue
            words = match.split()
            while words and words[0] in _STOP:
                words = words[1:]
            phrase = " ".join(words).strip(".,")
            if len(phrase) >= 3 and phrase not in found:
                found.append(phrase)
    return found or [scenario.domain]


def core_request(text: str) -> str:
    """The parent's request without its own lead-in bridge, starting lower-case."""
    last = sentences(text)[-1] if sentences(text) else text
    stripped = _LEADING_BRIDGE_RE.sub("", last).strip() or last
    return lower_first(stripped)


def lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and not text[1].isupper() and not text.startswith("I "):
        return text[0].lower() + text[1:]
    return text


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def pick(options: list[str] | tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]
