"""`adversary label RUN_DIR`: label a run's replies by hand, one keystroke each, to calibrate a judge on your domain."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import numpy as np
import typer
from rich.console import Console

from adversary.core.sampling import Selected, select_for_labeling
from adversary.errors import ConfigError
from adversary.fileio import atomic_writer
from adversary.labels import LabelRow, PoolRow, append_label, label_pool, read_labels

SYSTEM_PREVIEW_LINES = 12
KEYS = ("[o] out of scope (break)   [r] in scope, declines/redirects   [i] in scope, answers\n"
        "[b] borderline on/off   [n] note   [p] whole system prompt   [s] skip   [u] undo last   [q] quit")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """Model text made safe for a terminal: control characters (escape sequences) shown as code points."""
    return _CONTROL.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _screen(console: Console, row: PoolRow, position: str, borderline: bool, note: str, full_system: bool) -> None:
    console.clear()
    console.print(f"{position} · scenario {row.scenario_id} · {row.turn} turn · target {row.target}", style="bold", markup=False)
    system = _shown(row.system).splitlines()
    if not full_system and len(system) > SYSTEM_PREVIEW_LINES:
        system = system[:SYSTEM_PREVIEW_LINES] + [f"... ({len(system) - SYSTEM_PREVIEW_LINES} more lines: press p)"]
    console.print("\nSYSTEM PROMPT", style="bold cyan")
    console.print("\n".join(system), markup=False)
    if row.history:
        console.print("\nDIALOGUE SO FAR (last turns)", style="bold cyan")
        for message in row.history[-4:]:
            console.print(f"[{message.role}] {_shown(message.content)}", markup=False)
    console.print("\nUSER", style="bold cyan")
    console.print(_shown(row.user), markup=False)
    console.print("\nREPLY TO LABEL", style="bold yellow")
    console.print(_shown(row.response), markup=False)
    flags = " · ".join(x for x in ("borderline" if borderline else "", f"note: {note}" if note else "") if x)
    console.print(f"\n{KEYS}" + (f"\n({flags})" if flags else ""), style="dim", markup=False)


def _label_row(row: PoolRow, chosen: Selected, key: str, borderline: bool, note: str, annotator: str,
               run_dir: Path) -> LabelRow:
    return LabelRow(
        id=f"{run_dir.name}:{row.id}", scenario_id=row.scenario_id, scenario_source="user", reply_source="run",
        turn=row.turn, system=row.system, history=row.history, user=row.user, response=row.response,
        in_scope=key != "o", refusal=key == "r", borderline=borderline, note=note, annotator=annotator,
        run=str(run_dir), target=row.target, judge=row.judge, selection=chosen.stratum,
        selection_probability=chosen.probability,
    )


def _drop_last_line(path: Path) -> str | None:
    """Remove the last labeled row (undo); returns its id, or None when there is none."""
    rows = read_labels(path) if path.exists() else []
    if not rows:
        return None
    with atomic_writer(path) as out:
        for row in rows[:-1]:
            out.write(row.model_dump_json(exclude_none=True) + "\n")
    return rows[-1].id


@contextlib.contextmanager
def _keystrokes() -> Iterator[Callable[[], str]]:
    """Single keystrokes for the whole session: the terminal stays in cbreak mode, set without a flush.
    (click.getchar enters raw mode with a flush on every call, which drops keys typed while a reply is drawn.)"""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)

    def read_key() -> str:
        try:
            data = os.read(fd, 1)  # one byte at a time, so keys typed together each count
        except KeyboardInterrupt:
            return "q"
        return data.decode("ascii", errors="ignore") if data else "q"  # end of input stops like q

    try:
        yield read_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _line_mode() -> Iterator[None]:
    """The terminal's line editing and echo back for a typed note, then cbreak again."""
    fd = sys.stdin.fileno()
    cbreak = termios.tcgetattr(fd)
    attributes = termios.tcgetattr(fd)
    attributes[3] |= termios.ICANON | termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attributes)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, cbreak)


def label_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="An `adversary eval` or `run` output folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Labels JSONL to write; an existing file is continued."),
    size: int = typer.Option(100, "--size", "-n", min=1, help="Replies to select for labeling."),
    random_share: float = typer.Option(0.5, "--random-share", min=0.0, max=1.0,
                                       help="Share of the selection drawn uniformly; the rest comes from the replies the judge is least sure of."),
    uncertain_share: float = typer.Option(0.2, "--uncertain-share", min=0.0, max=1.0,
                                          help="Share of the run's replies, closest to the judge's threshold, that count as uncertain."),
    seed: int = typer.Option(0, "--seed", help="Seed of the selection; keep it when you continue a labels file."),
    annotator: str = typer.Option("annotator", "--annotator", help="Your name or initials, stored with each label."),
) -> None:
    """Label a run's replies by hand, one keystroke each; `judge calibrate` and `judge train` read the file.

    The replies shown are the judge's least certain ones plus a random share, each stored with the probability
    it had of being selected, so that `judge calibrate` weights rows and its agreement figures stay unbiased.
    The judge's verdict is never shown. Stop with q at any time; the same command continues where you stopped.
    """
    if not sys.stdin.isatty():
        raise ConfigError("adversary label reads single keystrokes: run it in a terminal")
    pool = label_pool(run_dir)
    chosen = select_for_labeling([r.score for r in pool], [r.judged_break for r in pool], size,
                                 np.random.default_rng(seed), uncertain_share=uncertain_share, random_share=random_share)
    ids = [f"{run_dir.name}:{pool[c.index].id}" for c in chosen]
    done = {row.id for row in read_labels(output)} & set(ids) if output.exists() else set()
    queue = [c for c, row_id in zip(chosen, ids) if row_id not in done]
    console = Console(highlight=False)
    position, borderline, note, full_system = 0, False, "", False
    with _keystrokes() as read_key:
        while position < len(queue):
            row = pool[queue[position].index]
            _screen(console, row, f"reply {len(done) + 1} of {len(chosen)}", borderline, note, full_system)
            key = read_key().lower()
            if key in ("o", "r", "i"):
                labeled = _label_row(row, queue[position], key, borderline, note, annotator, run_dir)
                append_label(output, labeled)
                done.add(labeled.id)
                position, borderline, note, full_system = position + 1, False, "", False
            elif key == "b":
                borderline = not borderline
            elif key == "n":
                with _line_mode():
                    note = click.prompt("note", default="", show_default=False)
            elif key == "p":
                full_system = not full_system
            elif key == "s":
                queue.append(queue.pop(position))
            elif key == "u" and output.exists():
                undone = _drop_last_line(output)
                if undone is not None:
                    done.discard(undone)
                    queue = [c for c, row_id in zip(chosen, ids) if row_id not in done]
                    position = 0
            elif key in ("q", "\x03", "\x04"):
                break
    console.print(f"{len(done)} of {len(chosen)} selected replies labeled in {output}"
                  + ("" if len(done) == len(chosen) else "; run the same command to continue"), markup=False)
