"""Watch mode: rerun the suites when a suite or a manifest it names changes.

Polls modification times (no dependency on inotify or similar); a change to
any watched file, or a file appearing or disappearing, triggers a rerun.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from meshauthz.errors import MeshauthzError
from meshauthz.mesh.loading import JwksText
from meshauthz.resources.loader import collect_files
from meshauthz.suite.format import find_suites, load_suite

Stamp = dict[str, tuple[float, int]]


def watched_files(paths: list[str]) -> list[str]:
    """The suite files under ``paths`` and every manifest file they load."""
    out: list[str] = []
    try:
        suites = find_suites(paths)
    except MeshauthzError:
        return list(paths)
    for s in suites:
        out.append(s)
        # A broken suite is still watched, so fixing it triggers a rerun.
        with contextlib.suppress(MeshauthzError):
            suite = load_suite(s)
            out.extend(collect_files(suite.resources))
            out.extend(str(f) for f in suite.jwks.values() if not isinstance(f, JwksText))
    # Directories themselves: a new suite or manifest file changes their listing.
    out.extend(p for p in paths if os.path.isdir(p))
    return out


def stamp(paths: list[str]) -> Stamp:
    out: Stamp = {}
    for f in watched_files(paths):
        try:
            st = os.stat(f)
        except OSError:
            continue
        out[f] = (st.st_mtime, st.st_size)
    return out


def watch(
    paths: list[str],
    run_once: Callable[[], object],
    *,
    interval: float = 0.5,
    max_runs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_change: Callable[[list[str]], None] | None = None,
) -> int:
    """Run once, then again after each change, until interrupted or ``max_runs``
    runs have happened. Returns the number of runs."""
    state = stamp(paths)
    run_once()
    runs = 1
    while max_runs is None or runs < max_runs:
        sleep(interval)
        new = stamp(paths)
        if new != state:
            changed = sorted(f for f in set(state) | set(new) if state.get(f) != new.get(f))
            state = new
            if on_change is not None:
                on_change(changed)
            run_once()
            runs += 1
    return runs
