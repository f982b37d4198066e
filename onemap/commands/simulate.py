"""`onemap simulate`: a living day through the public HTTP API (see :mod:`api.simulate`).

Accounts: unless ``--token-file`` names tokens from an earlier run, the accounts the simulation
needs are created (or given a fresh token) in the database: operators ``sim-operator-N``, a
residents' app ``sim-residents`` (device role, events sourced ``resident``) and one device
account ``sim-device-<DEVICE>`` per simulated device, bound to that device id. Their tokens go to
``VAR/simulate-tokens.json`` (mode 0600). Stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import typer

log = logging.getLogger(__name__)

TOKEN_TTL_S = 2 * 86400.0


def ensure_account(engine, name: str, role: str, devices: list[str] | None = None, source: str | None = None) -> str:  # noqa: ANN001
    from gis.accounts import UserExistsError, add_user, issue_token

    try:
        token = add_user(engine, name, role, devices=devices or (), source=source, ttl_s=TOKEN_TTL_S)
        assert token is not None
        return token
    except UserExistsError:
        return issue_token(engine, name, TOKEN_TTL_S, revoke_old=True).token


def _wait_for(url: str, seconds: float) -> None:
    import httpx

    from core.errors import UnavailableError

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/conformance", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise UnavailableError(f"{url} did not answer within {seconds:.0f} s", hint="is `onemap serve` running?")
        time.sleep(1.0)


def simulate(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="The running onemap server."),
    speed: float = typer.Option(10.0, "--speed", min=0.1, max=1000, help="Simulated seconds per real second."),
    devices: int = typer.Option(None, "--devices", min=1, help="Simulate at most N devices (default all)."),
    operators: int = typer.Option(1, "--operators", min=1, max=50, help="Operators dispatching."),
    events_per_day: float = typer.Option(150.0, "--events-per-day", min=0,
                                         help="Residents' reports per simulated day."),
    minutes: float = typer.Option(None, "--minutes", min=0, help="Stop after this many real minutes (default: never)."),
    token_file: Path = typer.Option(None, "--token-file", help="Tokens JSON of an earlier run (no database access)."),
    wait: float = typer.Option(120.0, "--wait", help="Seconds to wait for the server to answer."),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Replay a day relative to now: devices walk and post fixes, residents report, operators
    dispatch, workers accept/arrive/resolve, some leave their patrol areas."""
    from api.simulate import ApiClient, Simulation, SimulationConfig, Tokens, discover
    from core.settings import get_settings

    url = url.rstrip("/")
    _wait_for(url, wait)
    stored = json.loads(token_file.read_text(encoding="utf-8")) if token_file else None
    engine = None
    if stored is None:
        from gis.db import get_engine

        engine = get_engine()
        ops = [ensure_account(engine, f"sim-operator-{k + 1}", "operator") for k in range(operators)]
    else:
        ops = stored["operators"][:operators]
    with ApiClient(url) as client:
        world = discover(client, ops[0], max_workers=devices)
        if not world.workers:
            typer.secho("no workers with a recent device position found through the API; "
                        "load the sample first (`onemap load sample`)", fg=typer.colors.YELLOW, err=True)
        if stored is None:
            device_tokens = {w.device_id: ensure_account(engine, f"sim-device-{w.device_id}", "device", [w.device_id])
                             for w in world.workers}
            resident = ensure_account(engine, "sim-residents", "device", source="resident")
            out = get_settings().var_dir / "simulate-tokens.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"url": url, "operators": ops, "devices": device_tokens, "resident": resident}, fh)
            typer.echo(f"accounts ready: {len(ops)} operator(s), {len(device_tokens)} device(s), residents' app; "
                       f"tokens in {out} (0600)")
        else:
            device_tokens, resident = stored["devices"], stored.get("resident")
        tokens = Tokens(operators=ops, devices=device_tokens, resident=resident)
        cfg = SimulationConfig(speed=speed, events_per_day=events_per_day, seed=seed)
        sim = Simulation(client, world, tokens, cfg)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        typer.echo(f"simulating {len(sim.devices)} devices at speed {speed:g} against {url} (Ctrl-C stops)")
        try:
            sim.run(stop, duration_s=minutes * 60 if minutes else None)
        except KeyboardInterrupt:
            stop.set()
        st = client.stats
        typer.echo(f"stopped: {sim.counts}; {len(st.acked_fixes)} fixes and {len(st.acked_events)} events "
                   f"acknowledged, {st.errors()} errors")
