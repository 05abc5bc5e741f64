"""The README is short and every command and snippet in it works: the test command is .ci/run's, every `aru`
line parses against the real CLI (subcommand, options, choices), the Python snippet runs, the links resolve."""

import re
import shlex
from pathlib import Path

import click
import pytest

from aru.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def _commands(lang: str) -> list[str]:
    out = []
    for kind, body in BLOCKS:
        if kind == lang:
            out += [line.split("  #")[0].strip() for line in body.splitlines() if line.strip()]
    return out


def _aru_invocations() -> list[list[str]]:
    """Every `aru ...` command in the README's bash blocks and inline code (`aru run ...`)."""
    found = []
    for line in _commands("bash") + re.findall(r"`(aru [^`]+)`", README):
        for part in line.split("&&"):
            words = shlex.split(part.strip())
            if words and words[0] == "aru":
                found.append(words[1:])
    return found


def test_readme_is_short():
    assert len(README.splitlines()) <= 200


def test_the_test_command_is_what_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m ")]
    ci = [line.replace("python3 -m pip", "pip").replace("python3 -m pytest", "python -m pytest") for line in ci]
    ci = [re.sub(r" -q(?= )", "", line, count=1) if line.startswith("pip") else line for line in ci]
    readme_test = next(c for c in _commands("bash") if "pytest" in c)
    assert [p.strip() for p in readme_test.split("&&")] == ci


@pytest.mark.parametrize("args", _aru_invocations(), ids=lambda a: " ".join(a)[:60])
def test_every_aru_command_in_the_readme_parses(args):
    ctx = click.Context(main, info_name="aru")
    cmd = main.get_command(ctx, args[0])
    assert cmd is not None, f"aru {args[0]}: no such command"
    rest = args[1:]
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):  # aru organism real-base ...
        ctx = click.Context(cmd, info_name=rest[0], parent=ctx)
        cmd, rest = cmd.get_command(ctx, rest[0]), rest[1:]
        assert cmd is not None, f"no such command in {args}"
    sub = click.Context(cmd, info_name=args[0], parent=ctx)
    opts, extra, _ = cmd.make_parser(sub).parse_args(list(rest))  # unknown options raise NoSuchOption
    assert not extra, f"unexpected arguments {extra}"
    for param in cmd.params:
        if isinstance(param.type, click.Choice) and opts.get(param.name) is not None:
            param.type.convert(opts[param.name], param, sub)


def test_the_python_snippet_runs(tmp_path, monkeypatch):
    (code,) = [body for kind, body in BLOCKS if kind == "python"]
    assert len(code.splitlines()) <= 8
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "organism-edited" / "aru.json").is_file()


def test_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"
