"""The man pages (issue 14): sluice(1) and sluice.yaml(5) are written in
scdoc in docs/man and cover every command and flag: the flags that the
`--help` texts name and those the man page names are the same set, role
by role, and the hub: and node: keys of sluice.yaml(5) are the ones the
config file takes. When this fails after a new flag, document it in
docs/man/sluice.1.scd (and as a key in docs/man/sluice.yaml.5.scd, with
a row in src/config/config.c's hub_fields or node_fields)."""

import os
import re
import shutil
import subprocess

import pytest

from test_boot_roles import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MAN1 = os.path.join(ROOT, "docs", "man", "sluice.1.scd")
MAN5 = os.path.join(ROOT, "docs", "man", "sluice.yaml.5.scd")

FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[A-Za-z])(?![\w-])")
# The boot options of every role's help, not the role's own.
BOOT_LEVEL = {"--proxy", "--bridge", "--daemon", "--config", "-c",
              "--no-routes", "--help"}


def flags(text):
    return set(FLAG_RE.findall(text))


def helps():
    """{name: help text} of every command and role."""
    out = {}
    rc, top, err = cli("--help")
    assert rc == 0, err
    out["sluice"] = top
    commands = re.search(r"^commands:\n(.*?)\n\n", top, re.M | re.S)
    assert commands, top
    words = {line.split()[0] for line in commands.group(1).splitlines()
             if line.startswith("  ") and not line.startswith("   ")}
    assert {"boot", "config", "proxy", "bridge", "version"} <= words, words
    for w in sorted(words - {"version"}):
        rc, text, err = cli(w, "--help")
        assert rc == 0 and text, (w, err)
        out[w] = text
    for args in (("boot", "up", "--proxy", "--help"),
                 ("boot", "up", "--bridge", "--help"),
                 ("boot", "down", "--help")):
        rc, text, err = cli(*args)
        assert rc == 0, err
        out[" ".join(args[:-1])] = text
    return out


def section(text, title):
    """The part of a scdoc page under heading title, up to the next
    heading of the same or a higher level."""
    m = re.search(r"^(#+) " + re.escape(title) + r"\b.*$", text, re.M)
    assert m, "no heading %r" % title
    level = len(m.group(1))
    rest = text[m.end():]
    n = re.search(r"^#{1,%d} " % level, rest, re.M)
    return rest[:n.start()] if n else rest


def man1():
    with open(MAN1) as f:
        return f.read()


def test_every_flag_of_the_help_is_in_the_man_page_and_back():
    h = helps()
    in_help = set().union(*(flags(t) for t in h.values()))
    in_man = flags(man1())
    assert in_help - in_man == set(), \
        "flags in --help but not in docs/man/sluice.1.scd"
    assert in_man - in_help == set(), \
        "flags in docs/man/sluice.1.scd that no --help names"


def test_each_command_has_its_section():
    h = helps()
    page = man1()
    for cmd in h:
        if cmd in ("sluice",) or cmd.startswith("boot "):
            continue
        title = "BOOT UP" if cmd == "boot" else cmd.upper()
        assert re.search(r"^# .*\b%s\b" % re.escape(title), page, re.M), \
            "no section for sluice %s in sluice.1" % cmd


@pytest.mark.parametrize("role,title", [
    ("boot up --proxy", "HUB OPTIONS"),
    ("boot up --bridge", "NODE OPTIONS"),
])
def test_role_options_match_their_section(role, title):
    h = helps()
    page = man1()
    want = flags(h[role]) - BOOT_LEVEL
    got = flags(section(page, title)) - BOOT_LEVEL
    assert want - got == set(), "%s --help flags missing under %s" % (
        role, title)
    assert got - want == set(), "flags under %s that %s --help lacks" % (
        title, role)


def config_keys(tmp_path, name):
    """The keys the config file's section takes, as its error lists."""
    p = tmp_path / ("%s.yaml" % name)
    p.write_text("%s:\n  NOT-A-KEY: 1\n" % name)
    rc, out, err = cli("config", "check", str(p))
    assert rc == 1, err
    m = re.search(r"accepted fields \(the --\w+ options without the "
                  r"dashes\): (.*) \(line", err)
    assert m, err
    return set(m.group(1).split(", "))


@pytest.mark.parametrize("name,role", [("hub", "boot up --proxy"),
                                       ("node", "boot up --bridge")])
def test_yaml_keys_are_the_role_flags(tmp_path, name, role):
    keys = config_keys(tmp_path, name)
    h = helps()
    role_flags = {f[2:] for f in flags(h[role]) - BOOT_LEVEL
                  if f.startswith("--")}
    role_flags.discard("cacert")  # curl's, named in the hub's help
    assert keys - role_flags == set(), \
        "config keys of %s: that are no flag of %s" % (name, role)
    assert role_flags - keys == set(), \
        "flags of %s without a row in src/config/config.c" % role
    with open(MAN5) as f:
        page = f.read()
    documented = set(re.findall(r"\*([a-z][a-z0-9-]*)\*",
                                section(page, name)))
    assert keys - documented == set(), \
        "%s: keys missing in sluice.yaml(5)" % name
    assert documented - keys == set(), \
        "%s: keys in sluice.yaml(5) that the file does not take" % name


def test_scdoc_makes_both_pages(tmp_path):
    scdoc = shutil.which("scdoc")
    if scdoc is None:
        pytest.skip("scdoc is not installed (scripts/setup.sh installs it)")
    for src in (MAN1, MAN5):
        with open(src, "rb") as f:
            cp = subprocess.run([scdoc], stdin=f, capture_output=True,
                                timeout=30)
        assert cp.returncode == 0, cp.stderr.decode()
        assert cp.stdout.startswith(b".\\\"") or b".TH" in cp.stdout
