"""Fuzzing every command with mutated real inputs: no input is an internal error.

Each test drives the real command line in-process with inputs derived from
files the project decides correctly (examples/seed, tests/istio_suites,
tests/decide/fixtures), mutated, and checks what users depend on for any input:

- the exit code is a documented one: 0, 1 or 2 (3, an internal error, never);
- no traceback is printed;
- with ``-o json`` standard output is one JSON document;
- an exit 2 says where the problem is: a file (with its line when it is a
  file's content), ``<command line>`` or the option;
- a decision that hit an error (stage ``error``) is never ALLOW.

The seeds are fixed (derandomized) so CI sees the same examples every run;
``MESHAUTHZ_LONG=1`` multiplies the example counts by 50 for a soak.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from meshauthz.cli.main import main
from meshauthz.errors import EXIT_INTERNAL
from tests.adversarial import fuzz_strategies as fs

SEED = fs.REPO / "examples" / "seed"
SUITES = fs.REPO / "tests" / "istio_suites"
DUMPS = fs.REPO / "tests" / "decide" / "fixtures"

MANIFEST_FILES = [
    p
    for p in [*sorted(SEED.glob("*.yaml")), *sorted(SUITES.glob("*/*.yaml"))]
    if not p.name.endswith(".test.yaml")
]
MANIFEST_DOCS = {p: fs.load_docs(p) for p in MANIFEST_FILES if fs.load_docs(p)}
SUITE_DIRS = [SEED, *sorted(d for d in SUITES.iterdir() if any(d.glob("*.test.yaml")))]
DUMP_FILES = sorted(DUMPS.glob("*.config_dump.json"))
MESH_CONFIG: dict[str, Any] = {
    "trustDomain": "cluster.local",
    "trustDomainAliases": ["old.example"],
    "extensionProviders": [
        {
            "name": "ext",
            "envoyExtAuthzHttp": {"service": "ext.default.svc.cluster.local", "port": 8000},
        }
    ],
}


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=fs.examples(n),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str


def _stream() -> io.TextIOWrapper:
    # A real UTF-8 text stream, so that printing what cannot be encoded fails as on a terminal.
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


def invoke(args: list[str]) -> Run:
    out, err = _stream(), _stream()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0) if not isinstance(e.code, str) else 2
    texts = []
    for s in (out, err):
        s.flush()
        buf = s.buffer
        assert isinstance(buf, io.BytesIO)
        texts.append(buf.getvalue().decode("utf-8"))
    return Run(args, code, texts[0], texts[1])


def run(args: list[str]) -> Run:
    """``invoke``, and check what any input must give."""
    r = invoke(args)
    # --hypothesis-show-statistics shows how often each outcome was reached
    if currently_in_test_context():
        event(f"{args[0]}: exit {r.code}")
    check_run(r)
    return r


def _names_a_place(r: Run) -> bool:
    # test reports an unusable suite or case in its report, on standard output
    text = r.err + r.out
    if "<command line>" in text or "--" in text or "'-" in text:
        return True
    files = [a for a in r.args if "/" in a]
    return any(f in text or Path(f).name in text for f in files)


def check_run(r: Run) -> None:
    assert r.code != EXIT_INTERNAL, f"internal error (exit 3) for {r.args}: {r.err}"
    assert r.code in (0, 1, 2), f"exit {r.code} for {r.args}: {r.err}"
    assert "Traceback" not in r.out + r.err, f"traceback for {r.args}: {r.err}"
    if "json" in r.args:
        doc = json.loads(r.out)
        for d in doc if isinstance(doc, list) else [doc]:
            assert isinstance(d, dict)
            if d.get("stage") == "error":
                assert d.get("decision") != "ALLOW", d
    if r.code == 2:
        assert (r.err + r.out).strip(), r.args
        assert _names_a_place(r), (r.args, r.err)
    for line in r.out.splitlines():
        if "stage: error" in line or "(error)" in line:
            assert "ALLOW" not in line, (r.args, line)


@contextmanager
def workdir() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="meshauthz-fuzz-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def copy_mesh(src: Path, d: Path) -> Path:
    """A copy of the mesh directory ``src`` under ``d``; the Istio suites share
    their workloads (tests/istio_suites/echo), so those are copied whole."""
    if src.parent == SUITES:
        shutil.copytree(SUITES, d / "suites")
        return d / "suites" / src.name
    shutil.copytree(src, d / src.name)
    return d / src.name


def _write(path: Path, text: str) -> str:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return str(path)


SEED_REQUEST = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}


def suite_request(suite: Path) -> Any:
    return yaml.safe_load(suite.read_text())["cases"][0]["request"]


REQUEST_FLAGS = ["--from", "default/frontend", "--to", "default/backend", "--path", "/api/v1/data"]
FORMATS = st.sampled_from([[], ["-o", "json"]])

manifest_sources = st.sampled_from(sorted(MANIFEST_DOCS, key=str))


@st.composite
def mutated_manifest(draw: st.DrawFn) -> tuple[Path, str]:
    src = draw(manifest_sources)
    return src, draw(fs.mutated_yaml(MANIFEST_DOCS[src]))


@fuzz_settings(100)
@given(mutated_manifest(), FORMATS)
def test_validate_mutated_manifests(case: tuple[Path, str], fmt: list[str]) -> None:
    src, text = case
    with workdir() as d:
        run(["validate", _write(d / src.name, text), *fmt])


@fuzz_settings(80)
@given(
    mutated_manifest(), st.sampled_from(["check", "explain", "build", "test", "analyze"]), FORMATS
)
def test_commands_on_a_mutated_mesh(case: tuple[Path, str], command: str, fmt: list[str]) -> None:
    """The mutated file replaces its original among its mesh's files."""
    src, text = case
    with workdir() as d:
        mesh = copy_mesh(src.parent, d)
        _write(mesh / src.name, text)
        suites = sorted(mesh.glob("*.test.yaml"))
        if command in ("check", "explain"):
            # a request the mesh's own suite decides (the seed's without one)
            request = suite_request(suites[0]) if suites else SEED_REQUEST
            req = _write(d / "req.yaml", fs.dump_yaml([request]))
            run([command, "-f", str(mesh), "--request", req, *fmt])
        elif command == "build":
            workload = "default/backend" if src.parent == SEED else "echo1/b"
            run(["build", "-f", str(mesh), "--workload", workload, *fmt])
        elif command == "analyze":
            run(["analyze", str(mesh), *fmt])
        elif suites:
            run(["test", str(suites[0]), *fmt])


@fuzz_settings(150)
@given(fs.request_docs(), st.sampled_from(["check", "explain"]), FORMATS)
def test_mutated_request_files(doc: Any, command: str, fmt: list[str]) -> None:
    with workdir() as d:
        req = _write(d / "req.yaml", fs.dump_yaml([doc]))
        run([command, "-f", str(SEED), "--request", req, *fmt])


@st.composite
def request_flags(draw: st.DrawFn) -> list[str]:
    args = ["--to", draw(fs.GOOD_TARGETS if draw(st.integers(0, 2)) else fs.TARGETS)]
    caller = draw(st.sampled_from(["--from", "--from", "--principal", "--plaintext", None]))
    if caller == "--plaintext":
        args.append(caller)
    elif caller is not None:
        args += [caller, draw(st.one_of(fs.GOOD_TARGETS, fs.TARGETS, fs.ODD_TEXT))]
    flags: dict[str, st.SearchStrategy[str]] = {
        "--path": fs.PATH_VALUES,
        "--method": fs.METHODS,
        "--host": fs.HOSTS,
        "--port": fs.PORTS.map(str),
        "--source-ip": fs.IPS,
        "--remote-ip": fs.IPS,
        "--sni": fs.HOSTS,
        "--jwt-claims": fs.CLAIMS,
        "--protocol": st.sampled_from(["http", "tcp"]),
    }
    for flag, strat in flags.items():
        if draw(st.integers(0, 3)) == 0:
            args += [flag, draw(strat)]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(fs.HEADER_NAMES | fs.HEADER_TEXT)
        sep = draw(st.sampled_from([": ", ":", ": ", ""]))
        args += ["-H", name + sep + draw(fs.HEADER_TEXT)]
    return args


@fuzz_settings(200)
@given(request_flags(), st.sampled_from(["check", "explain"]), FORMATS)
def test_hostile_flag_values(flags: list[str], command: str, fmt: list[str]) -> None:
    # argv cannot carry NUL bytes; everything else can.
    flags = [f.replace("\x00", "") for f in flags]
    run([command, "-f", str(SEED), *flags, *fmt])


@fuzz_settings(80)
@given(st.sampled_from(SUITE_DIRS), st.data(), FORMATS)
def test_mutated_suites(src: Path, data: st.DataObject, fmt: list[str]) -> None:
    suite = sorted(src.glob("*.test.yaml"))[0]
    with workdir() as d:
        mesh = copy_mesh(src, d)
        text = data.draw(fs.mutated_yaml(fs.load_docs(suite)))
        run(["test", _write(mesh / suite.name, text), *fmt])


@fuzz_settings(80)
@given(
    fs.mutated_yaml([MESH_CONFIG]),
    st.sampled_from(["check", "explain", "build", "analyze"]),
    FORMATS,
)
def test_mutated_mesh_configs(text: str, command: str, fmt: list[str]) -> None:
    with workdir() as d:
        mc = _write(d / "mesh.yaml", text)
        common = ["-f", str(SEED), "--mesh-config", mc, *fmt]
        if command == "build":
            run(["build", *common, "--workload", "default/backend"])
        elif command == "analyze":
            run(["analyze", str(SEED), "--mesh-config", mc, *fmt])
        else:
            run([command, *common, *REQUEST_FLAGS])


DUMP_DOCS = {p: json.loads(p.read_text()) for p in DUMP_FILES}


@st.composite
def mutated_dump(draw: st.DrawFn) -> str:
    src = draw(st.sampled_from(DUMP_FILES))
    tree = draw(fs.mutated_tree(DUMP_DOCS[src], max_mutations=4))
    text = json.dumps(tree, allow_nan=True)
    if draw(st.integers(0, 5)) == 0:
        text = draw(
            st.sampled_from(
                [
                    text[: len(text) // 2],
                    text + "}",
                    "\ufeff" + text,
                    text.replace(":", ": 1e999,", 1),
                ]
            )
        )
    return text


@fuzz_settings(100)
@given(
    mutated_dump(),
    st.sampled_from(
        [
            ["--principal", "cluster.local/ns/default/sa/frontend", "--to", ":80"],
            ["--plaintext", "--port", "80", "-H", "x-a: \t b"],
            ["--principal", "spiffe://x", "--to", ":80", "--path", "/%2e%2e/a#f"],
            ["--principal", "cluster.local/ns/default/sa/frontend", "--to", ":8080"],
        ]
    ),
    FORMATS,
)
def test_mutated_config_dumps(text: str, flags: list[str], fmt: list[str]) -> None:
    with workdir() as d:
        run(["check", "--config-dump", _write(d / "dump.json", text), *flags, *fmt])


def test_the_harness_catches_an_internal_error(failing_matcher: str) -> None:
    """The properties fail on what they are meant to catch: a fault while deciding."""
    try:
        run(["check", "-f", str(SEED), *REQUEST_FLAGS, "-o", "json"])
    except AssertionError as e:
        assert failing_matcher in str(e)
        return
    raise AssertionError("an internal error passed the harness's checks")


def test_an_unknown_name_in_a_request_says_where_it_is_written() -> None:
    """Found by this harness: a caller or destination not in the mesh was
    reported without the request file or the field that names it."""
    with workdir() as d:
        req = _write(
            d / "req.yaml",
            "- {from: default/frontend, to: default/backend}\n- from: nope/x\n  to: default/backend\n",
        )
        r = run(["check", "-f", str(SEED), "--request", req])
        assert r.code == 2 and f"{req}:2:3: from: no workload nope/x" in r.err
        r = run(
            ["check", "-f", str(SEED), "--from", "default/frontend", "--to", "nope/x", "-o", "json"]
        )
        error = json.loads(r.out)["error"]
        assert (error["file"], error["field"]) == ("<command line>", "to")
        assert error["message"] == "no workload or service nope/x"


def test_an_unknown_workload_to_build_names_the_option() -> None:
    """Found by this harness: build --workload with a name not in the mesh."""
    r = run(["build", "-f", str(SEED), "--workload", "nope/x"])
    assert r.code == 2 and "error: --workload: no workload nope/x" in r.err
    r = run(["build", "-f", str(SEED), "--workload", "nope/x", "-o", "json"])
    error = json.loads(r.out)["error"]
    assert (error["code"], error["field"]) == ("not-found", "--workload")


def test_an_option_value_that_looks_like_an_option_keeps_json_errors() -> None:
    """Found by this harness: with ``--sni --`` (the value ``--``) an error
    after ``-o json`` was reported as text, the format being read as if ``--``
    ended the options."""
    args = ["check", "-f", str(SEED), "--to", "default/backend", "--plaintext"]
    r = run([*args, "--sni", "--", "--host", "", "-o", "json"])
    assert r.code == 2 and json.loads(r.out)["error"]["field"] == "host"
    r = run([*args, "--sni", "-o", "--host", "", "-o", "json"])
    assert r.code == 2 and json.loads(r.out)["error"]["field"] == "host"
    # a real end of options still ends them
    r = invoke([*args, "--", "-o", "json"])
    assert r.code == 2 and r.out == "" and "unexpected extra argument" in r.err


def test_an_rbac_action_of_the_wrong_type_in_a_dump_is_bad_input() -> None:
    """Found by this harness's soak: an RBAC ``action`` given as a list or an
    object in a config dump was an internal error (an unhashable lookup key)."""
    dump = DUMP_DOCS[DUMPS / "seed-backend.config_dump.json"]
    text = json.dumps(dump).replace('"action": "DENY"', '"action": ["DENY"]')
    assert text != json.dumps(dump)
    with workdir() as d:
        path = _write(d / "dump.json", text)
        r = run(["check", "--config-dump", path, "--plaintext", "--to", ":80"])
    assert r.code == 2 and "rules.action: unknown action ['DENY']" in r.err


def test_node_metadata_of_the_wrong_type_in_a_dump_is_bad_input() -> None:
    """Found by this harness's soak: a node ``metadata`` that is a list was an
    internal error."""
    dump = copy.deepcopy(DUMP_DOCS[DUMPS / "seed-backend.config_dump.json"])

    def listify(tree: Any) -> int:
        if isinstance(tree, dict):
            n = 0
            if isinstance(tree.get("node"), dict) and isinstance(
                tree["node"].get("metadata"), dict
            ):
                tree["node"]["metadata"] = [tree["node"]["metadata"]]
                n = 1
            return n + sum(listify(v) for v in tree.values())
        if isinstance(tree, list):
            return sum(listify(v) for v in tree)
        return 0

    assert listify(dump)
    with workdir() as d:
        path = _write(d / "dump.json", json.dumps(dump))
        r = run(["check", "--config-dump", path, "--plaintext", "--to", ":80"])
    assert r.code == 2 and "node.metadata: expected an object" in r.err
