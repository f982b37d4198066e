"""`onemap dispatch ...`: dispatch administration as the schema owner.

``onemap dispatch deadlines`` lists the deadline minutes per priority (table ``priority_deadline``);
``--set A=240 --set B=1440`` changes them first (new events get them), all in one transaction.
"""

from __future__ import annotations

import getpass

import typer

from gis import dispatch
from gis.db import get_engine

app = typer.Typer(no_args_is_help=True)


def parse_assignment(text: str) -> tuple[str, int]:
    """``A=240`` -> ``("A", 240)`` (priority A-D, minutes > 0)."""
    prio, sep, minutes = text.partition("=")
    prio = prio.strip().upper()
    if not sep or prio not in dispatch.PRIORITIES or not minutes.strip().isdigit() or int(minutes) <= 0:
        raise typer.BadParameter(f"{text!r}: PRIORITY=MINUTES with a priority of "
                                 f"{', '.join(dispatch.PRIORITIES)} and minutes > 0, e.g. A=240",
                                 param_hint="--set")
    return prio, int(minutes)


@app.command("deadlines")
def deadlines(
    set_: list[str] = typer.Option(
        [], "--set", help="PRIORITY=MINUTES, e.g. A=240 (repeatable); applies to events created afterwards."),
) -> None:
    """Show the deadline per priority, after the changes given with --set."""
    changes = dict(parse_assignment(s) for s in set_)
    actor = f"cli:{getpass.getuser()}"
    with get_engine().begin() as conn:
        for prio, minutes in changes.items():
            dispatch.set_deadline(conn, prio, minutes, actor=actor)
        rows = dispatch.deadlines(conn)
    for r in rows:
        mark = " (changed)" if r["priority"] in changes else ""
        by = f" by {r['updated_by']}" if r.get("updated_by") else ""
        typer.echo(f"{r['priority']}  {r['minutes']:>6} min  updated {r['updated_at']:%Y-%m-%d %H:%M}{by}{mark}")
