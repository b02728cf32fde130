"""The command line imports what the command it runs needs, nothing more:
``--version`` loads neither click nor a command, ``check`` not the others'
modules, nor the symbolic engine (z3), nor the analysis unless a rule decided,
and no command pydantic (the manifests' models are msgspec Structs).
What a command imports is its start-up time (benchmarks/throughput.py
``startup()`` measures it); these tests fail when a heavy import comes back."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from meshauthz.cli.lean_imports import NON_PRINTABLE, PYYAML_NON_PRINTABLE
from meshauthz.resources.istio_release import ISTIO
from tests.conftest import REPO

SEED = str(REPO / "examples" / "seed")
# other commands' modules, and the layers check never uses
HEAVY = (
    "meshauthz.cli.test_cmd",
    "meshauthz.cli.mesh_cmd",
    "meshauthz.cli.diff_cmd",
    "meshauthz.cli.reach_cmd",
    "meshauthz.cli.redundant_cmd",
    "meshauthz.cli.analyze_cmd",
    "meshauthz.cli.validate",
    "meshauthz.cli.build_cmd",
    "meshauthz.runtime",
    "meshauthz.suite",
    "meshauthz.symbolic",
    "meshauthz._api",
    "meshauthz.decide.config_dump",
    "meshauthz.analyze.checks.every_request",
    "meshauthz.analyze.sarif",
    "z3",
)
# ztunnel's model and istiod's ambient conversion: for meshes with something ambient
AMBIENT = (
    "meshauthz.ambient.authorization",
    "meshauthz.ambient.convert",
    "meshauthz.ambient.evaluate",
    "meshauthz.ambient.store",
    "meshauthz.ambient.ztunnel_config",
    "meshauthz.ambient.waypoint_status",
)
# imported by branches the seed never takes: the JWT filter's evaluation (a chain
# with a JWT filter, a request with a token, --jwks) and Envoy's JSON readers and
# writers (a filter's JSON, a network RBAC filter)
UNUSED_BY_THE_SEED = (
    "meshauthz.envoy.jwt_authn.evaluate",
    "meshauthz.envoy.jwt_authn.token_json",
    "meshauthz.envoy.jwt_authn.serialize",
    "meshauthz.envoy.rbac.serialize",
)
# what the analysis adds: imported only to name a finding on the deciding rule
ANALYSIS = ("meshauthz.analyze.run", "meshauthz.analyze.checks", "meshauthz.analyze.context")
# standard modules imported where they are used, for inputs the seed does not
# have: JSON (-o json, --jwt-claims, JWKS), a JWT's query parameters and --jwks
# files (urllib.parse, pathlib), durations in a mesh config (fractions), a bug's
# traceback: together 4% of what check on the seed executed; and hashlib, whose
# import loads OpenSSL (2%), for hashes CPython has its own code for
LAZY_STDLIB = {"json", "urllib.parse", "pathlib", "fractions", "traceback", "hashlib"}


def _run(*args: str) -> tuple[str, set[str]]:
    """The command's standard output, and the modules it imported (as the
    installed command runs it: a fresh interpreter)."""
    code = (
        "import sys; from meshauthz.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    return proc.stdout, set(proc.stderr.split())


def _heavy(mods: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in mods if m.startswith(prefixes))


def test_version_imports_neither_click_nor_a_command() -> None:
    out, mods = _run("--version")
    assert out == f"meshauthz 0.1.0, modelling Istio {ISTIO}\n"
    assert not _heavy(mods, ("click", "meshauthz.cli.group", "meshauthz.cli.check"))
    assert not _heavy(mods, ("meshauthz.decide", *HEAVY))
    # nor typing and re: a third of its imports
    assert not {"typing", "re", "dataclasses"} & mods


def test_version_through_the_group_says_the_same() -> None:
    # click's --version option (eager, before any command) prints the same line
    fast, _ = _run("--version")
    slow, mods = _run("--version", "check")
    assert slow == fast and "click" in mods and "meshauthz.cli.check" not in mods


def test_check_imports_neither_other_commands_nor_z3() -> None:
    out, mods = _run(
        "check", "-f", SEED, "--from", "default/frontend", "--to", "default/backend",
        "--path", "/api/v1/data",
    )  # fmt: skip
    # the deciding rule has a finding: check names it, from the analysis
    assert "finding MA2001 (deny-all-over-allow) on default/deny-all-backend rule 0" in out
    assert "meshauthz.cli.check" in mods and "meshauthz.analyze.run" in mods
    assert not _heavy(mods, HEAVY), _heavy(mods, HEAVY)
    assert not _heavy(mods, AMBIENT), _heavy(mods, AMBIENT)  # the seed has sidecars only
    assert not _heavy(mods, UNUSED_BY_THE_SEED), _heavy(mods, UNUSED_BY_THE_SEED)
    # nor RE2 (the seed has no regex or path template) nor socket (no address to parse)
    assert not {"re2", "socket"} & mods, {"re2", "socket"} & mods
    assert not LAZY_STDLIB & mods, LAZY_STDLIB & mods


def test_check_without_a_deciding_rule_imports_no_analysis() -> None:
    # the frontend has no policy: allowed by default, no rule to name a finding on
    out, mods = _run("check", "-f", SEED, "--from", "default/backend", "--to", "default/frontend")
    assert out.startswith("ALLOW (200)") and "finding" not in out
    assert not _heavy(mods, (*HEAVY, *ANALYSIS)), _heavy(mods, (*HEAVY, *ANALYSIS))


@pytest.mark.parametrize(
    "args",
    [
        ["validate", SEED],
        ["explain", "-f", SEED, "--from", "default/frontend", "--to", "default/backend"],
        ["test", str(REPO / "examples" / "seed" / "seed.test.yaml")],
        ["analyze", SEED],  # without --deep: no question about every request
        ["build", "-f", SEED, "--workload", "default/backend"],
    ],
    ids=lambda a: a[0],
)
def test_commands_that_decide_concretely_never_import_the_symbolic_engine(
    args: list[str],
) -> None:
    out, mods = _run(*args)
    assert out, "the command printed nothing: it did not run"
    symbolic = ("z3", "meshauthz.symbolic", "meshauthz.analyze.checks.every_request")
    assert not _heavy(mods, (*symbolic, "meshauthz.runtime")), _heavy(mods, symbolic)


def test_no_command_imports_pydantic(tmp_path) -> None:
    # every command, run in one interpreter: what any of them imports stays loaded
    code = (
        "import sys; from meshauthz.cli.main import main\n"
        "for args in sys.argv[1].split(' ; '):\n"
        "    try:\n        main(args.split())\n    except SystemExit:\n        pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)"
    )
    suite = str(REPO / "examples" / "seed" / "seed.test.yaml")
    runs = [
        "--version",
        f"validate {SEED}",
        f"analyze {SEED}",
        f"check -f {SEED} --from default/frontend --to default/backend",
        f"explain -f {SEED} --from default/frontend --to default/backend",
        f"build -f {SEED} --workload default/backend",
        f"test {suite}",
        f"diff {SEED} {SEED}",
        f"equiv {SEED} {SEED}",
        f"redundant {SEED}",
        f"reach -f {SEED}",
        f"mesh status --state-dir {tmp_path / 'none'}",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", code, " ; ".join(runs)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    mods = set(proc.stderr.split())
    ran = ("meshauthz.cli.diff_cmd", "meshauthz.cli.reach_cmd", "meshauthz.cli.mesh_cmd", "z3")
    assert set(ran) <= mods, "a command did not run"
    assert not _heavy(mods, ("pydantic",)), _heavy(mods, ("pydantic",))


def test_help_lists_every_command() -> None:
    from meshauthz.cli.group import COMMANDS

    out, _ = _run("--help")
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


def test_after_reading_its_mesh_a_command_leaves_it_to_no_full_collection() -> None:
    # what a command read is frozen and full collections are off, so that
    # building every workload's filters does not walk the whole heap again and
    # again (collector.settle); young collections go on as before
    code = (
        "import gc, sys; from meshauthz.cli.main import main\n"
        "young = gc.get_threshold()[0]\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(gc.get_threshold()[0] == young, gc.get_threshold()[2], gc.get_freeze_count(),"
        " file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "validate", SEED],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    same_young, full, frozen = proc.stderr.splitlines()[-1].split()
    assert same_young == "True"
    assert int(full) >= 1 << 30
    assert int(frozen) > 1000


def test_pyyaml_reader_pattern_is_the_seeded_one_and_matches_the_same() -> None:
    # a command's yaml import finds PyYAML's NON_PRINTABLE compiled, as its
    # complement (cli/lean_imports.py); if PyYAML changes the pattern's text,
    # the seed no longer applies and this fails
    code = (
        "import sys; from meshauthz.cli.main import main\n"
        "try:\n    main(['validate', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "import yaml; print(ascii(yaml.reader.Reader.NON_PRINTABLE.pattern))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, SEED], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.stdout.splitlines()[-1] == ascii(NON_PRINTABLE)
    # the two patterns match the same characters, over all of Unicode
    everything = "".join(map(chr, range(0x110000)))
    ours = re.compile(NON_PRINTABLE).findall(everything)
    assert ours == re.compile(PYYAML_NON_PRINTABLE).findall(everything)
    assert len(ours) == 9 + 2 + 18 + 6 + 26 + 2048 + 2  # what the complement lists
    # and PyYAML compiles that very text when nothing seeded it
    code = "import yaml; print(ascii(yaml.reader.Reader.NON_PRINTABLE.pattern))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.stdout.strip() == ascii(PYYAML_NON_PRINTABLE)


def test_a_command_imports_its_modules_without_collecting() -> None:
    # collector.starting: no cyclic collection while a command's modules are
    # imported, and what they made frozen after; collected as they came, they
    # cost 45 collections on the seed, a tenth of check's start-up
    code = (
        "import gc, sys; from meshauthz.cli.main import main\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'stop' and runs.append(1))\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(len(runs), 'meshauthz.decide.engine' in sys.modules, file=sys.stderr)"
    )
    args = ["check", "-f", SEED, "--from", "default/frontend", "--to", "default/backend"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    collections, imported = proc.stderr.split()
    assert imported == "True" and int(collections) <= 8, proc.stderr
