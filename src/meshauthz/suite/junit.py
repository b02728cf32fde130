"""JUnit XML for CI systems: one <testsuite> per suite file, one <testcase> per case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from meshauthz.suite.runner import CaseResult, RunResult


def junit_xml(result: RunResult, explain: Callable[[CaseResult], list[str]]) -> bytes:
    """The JUnit document. ``explain`` gives a failed case's explanation lines."""
    root = ET.Element("testsuites", name="meshauthz test")
    total = failures = errors = 0
    for s in result.suites:
        el = ET.SubElement(root, "testsuite", name=s.name, file=s.file)
        n_fail = s.count("fail")
        n_err = (
            s.count("error")
            + s.count("internal-error")
            + (1 if s.error is not None or s.findings else 0)
        )
        n = len(s.cases) + (1 if s.error is not None or s.findings else 0)
        el.set("tests", str(n))
        el.set("failures", str(n_fail))
        el.set("errors", str(n_err))
        el.set("skipped", "0")
        total, failures, errors = total + n, failures + n_fail, errors + n_err
        if s.error is not None or s.findings:
            tc = ET.SubElement(el, "testcase", name="(load)", classname=s.name, file=s.file)
            message = (
                str(s.error)
                if s.error is not None
                else "the cluster would reject these objects (Istio or the API server)"
            )
            err = ET.SubElement(tc, "error", message=message, type="unusable input")
            err.text = "\n".join(f.to_text() for f in s.findings) or message
        for c in s.cases:
            tc = ET.SubElement(
                el,
                "testcase",
                name=c.case.name,
                classname=s.name,
                file=c.case.location.file,
                line=str(c.case.location.line or 0),
            )
            if c.outcome == "fail":
                f = ET.SubElement(tc, "failure", message="; ".join(c.mismatches), type="mismatch")
                f.text = "\n".join(explain(c))
            elif c.outcome == "error":
                e = ET.SubElement(tc, "error", message=c.error or "", type="unusable input")
                e.text = c.error or ""
            elif c.outcome == "internal-error":
                lines = explain(c)
                e = ET.SubElement(tc, "error", message=lines[0], type="internal error")
                e.text = "\n".join(lines)
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"
