#!/usr/bin/python3
"""Reads what the test tools wrote and prints "PASSED FAILED SKIPPED" for
scripts/test.sh, with a line on standard error for each thing that counts
as a failure although no test said so (a program that never ran its cases,
a missing target, a build without the options the run needs).

  results.py options BUILD_DIR key=value ...   exit 1 unless every option is set
  results.py compiler BUILD_DIR                 prints the C compiler's id
  results.py unit TESTLOG_JSON EXPECTED_PROGRAMS
  results.py pytest JUNIT_XML PYTEST_EXIT_CODE
  results.py fuzz-expected FUZZ_MESON_BUILD     prints the target names
  results.py unit-expected UNIT_DIR             prints the number of programs
"""

import glob
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET


def say(msg):
    print("  " + msg, file=sys.stderr)


def introspect(build, what):
    out = subprocess.run(["meson", "introspect", build, what],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def cmd_options(build, *pairs):
    have = {o["name"]: o["value"] for o in introspect(build, "--buildoptions")}
    ok = True
    for pair in pairs:
        key, want = pair.split("=", 1)
        value = have.get(key)
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        if str(value) != want:
            say("%s: option %s is %r, the run needs %r" % (build, key, value,
                                                          want))
            ok = False
    return 0 if ok else 1


def cmd_compiler(build):
    # meson 1.0 has no introspection of compilers; its log names the one
    # it chose ("C compiler for the host machine: clang (clang 14.0.6 ...").
    try:
        log = open(os.path.join(build, "meson-logs", "meson-log.txt")).read()
    except OSError:
        log = ""
    m = re.findall(r"^C compiler for the host machine: \S+ \((\w+)", log, re.M)
    print(m[-1] if m else "unknown")
    return 0


# A meson.build line that registers something: `xxx += {'name': ...}`.
def _registered(path, table):
    names = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*%s\s*\+=\s*\{\s*'([^']+)'" % table, line)
            if m:
                names.append(m.group(1))
    return names


def cmd_fuzz_expected(meson_build):
    print(" ".join(_registered(meson_build, "fuzz_targets")))
    return 0


def cmd_unit_expected(unit_dir):
    n = 0
    for path in sorted(glob.glob(os.path.join(unit_dir, "*", "meson.build"))):
        # Programs with the plain runner, and those of tests/unit/oom that
        # link the failing allocator.
        n += len(_registered(path, r"(?:unit|oom)_tests"))
    print(n)
    return 0


def cmd_unit(testlog, expected):
    """cmocka cases, not programs: each program says "Running N test(s)"
    and marks each case OK, FAILED, ERROR or SKIPPED. A program that
    crashed, timed out or ran fewer cases than it announced counts its
    missing cases (at least one) as failed."""
    passed = failed = skipped = 0
    programs = 0
    try:
        lines = open(testlog).read().splitlines()
    except OSError as e:
        say("no unit test log (%s)" % e)
        print(0, 1, 0)
        return 0
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        programs += 1
        out = t.get("stdout") or ""
        announced = sum(int(n) for n in re.findall(
            r"^\[=+\] Running (\d+) test", out, re.M))
        # Names, not lines: cmocka lists failed and skipped cases again in
        # its summary.
        def names(word):
            return set(re.findall(r"^\[ +%s +\] (?!---|\d+ test)(\S+)" % word,
                                  out, re.M))
        ok = len(names("OK"))
        bad = len(names("FAILED") | names("ERROR"))
        skip = len(names("SKIPPED"))
        missing = max(announced - ok - bad - skip, 0)
        result = t.get("result", "?")
        if result in ("OK", "EXPECTEDFAIL") and announced == 0:
            say("%s: ran no cmocka case" % t["name"])
            missing = 1
        if result not in ("OK",) and bad == 0 and missing == 0:
            missing = 1  # failed (timeout, unexpected pass) without a case
        if result != "OK" or missing:
            say("%s: %s, %d of %d cases passed" % (t["name"], result, ok,
                                                   announced))
        passed += ok
        failed += bad + missing
        skipped += skip
    if programs != int(expected):
        say("unit suite: %d programs ran, %s are registered in tests/unit"
            % (programs, expected))
        failed += max(int(expected) - programs, 1)
    print(passed, failed, skipped)
    return 0


def cmd_pytest(junit, rc):
    """Each test case once: failed if any phase (setup, call, teardown)
    failed or erred, else skipped (skip or xfail), else passed. A run that
    exits non-zero with nothing failed (a crash, a timeout of the whole
    run, a usage error) counts one failure."""
    cases = {}
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError) as e:
        say("no pytest report (%s)" % e)
        print(0, 1, 0)
        return 0
    for tc in root.iter("testcase"):
        key = (tc.get("classname"), tc.get("name"))
        kinds = {child.tag for child in tc}
        if kinds & {"failure", "error"}:
            outcome = "failed"
        elif "skipped" in kinds:
            outcome = "skipped"
        else:
            outcome = "passed"
        rank = {"passed": 0, "skipped": 1, "failed": 2}
        if rank[outcome] >= rank[cases.get(key, "passed")]:
            cases[key] = outcome
    passed = sum(1 for v in cases.values() if v == "passed")
    failed = sum(1 for v in cases.values() if v == "failed")
    skipped = sum(1 for v in cases.values() if v == "skipped")
    if int(rc) != 0 and failed == 0:
        say("pytest exited %s with no failed test in its report" % rc)
        failed = 1
    if not cases:
        say("pytest ran no test")
        failed = max(failed, 1)
    print(passed, failed, skipped)
    return 0


def cmd_skips(kind, path):
    """One line per skipped case, "reason<TAB>name": pytest's from the
    junit report (the skip's message), cmocka's from the unit log (cmocka
    gives no reason: the case asked to be skipped)."""
    if kind == "pytest":
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            return 0
        for tc in root.iter("testcase"):
            for child in tc:
                if child.tag == "skipped":
                    why = (child.get("message") or child.text or "").strip()
                    why = why.removeprefix("Skipped: ") or "no reason given"
                    print("%s\t%s::%s" % (why.splitlines()[0],
                                          tc.get("classname"),
                                          tc.get("name")))
                    break
    elif kind == "unit":
        try:
            lines = open(path).read().splitlines()
        except OSError:
            return 0
        for line in lines:
            if not line.strip():
                continue
            t = json.loads(line)
            for name in sorted(set(re.findall(
                    r"^\[ +SKIPPED +\] (?!---|\d+ test)(\S+)",
                    t.get("stdout") or "", re.M))):
                print("the case called skip() (cmocka gives no reason)\t"
                      "%s:%s" % (t["name"], name))
    return 0


def cmd_skip_summary(path):
    """The lines of cmd_skips grouped by reason, most frequent first, each
    with the tests it skipped."""
    by = {}
    try:
        for line in open(path).read().splitlines():
            why, _, name = line.partition("\t")
            by.setdefault(why, []).append(name)
    except OSError:
        return 0
    if not by:
        return 0
    print("skipped, and why:")
    for why, names in sorted(by.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(n.rpartition(".")[2] for n in names[:6])
        more = " and %d more" % (len(names) - 6) if len(names) > 6 else ""
        print("  %d x %s: %s%s" % (len(names), why, shown, more))
    return 0


def main(argv):
    cmds = {"options": cmd_options, "compiler": cmd_compiler,
            "unit": cmd_unit, "pytest": cmd_pytest,
            "skips": cmd_skips, "skip-summary": cmd_skip_summary,
            "fuzz-expected": cmd_fuzz_expected,
            "unit-expected": cmd_unit_expected}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
