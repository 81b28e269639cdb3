"""No Docker engine here, so the images are checked statically: every COPY finds its source in
the build context (the repository root filtered by .dockerignore), every ``damo ...`` the image
runs is a registered command, the final user is non-root, and versions are pinned."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer.main
import yaml

from damo_core.cli.app import app

ROOT = Path(__file__).parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
CONSTRAINTS = ROOT / "docker" / "constraints.txt"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def ignore_patterns() -> list[str]:
    return [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
            if p.strip() and not p.startswith("#")]


def in_context(rel: str) -> bool:
    """Docker's rule: the last matching .dockerignore pattern wins; '!' re-includes."""
    included = True
    for pattern in ignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/"):
            included = negate
    return included


def damo_commands() -> set[str]:
    return set(typer.main.get_command(app).commands)


def test_there_are_cpu_and_gpu_images():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.cpu", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_is_in_the_build_context(dockerfile):
    copies = [args for op, args in instructions(dockerfile) if op == "COPY"]
    assert copies
    for args in copies:
        if "--from=" in args:
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"{dockerfile.name}: COPY {source}: not in the repository"
            files = [path] if path.is_file() else [
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            assert files, f"{dockerfile.name}: COPY {source} is empty"
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert in_context(rel), f"{dockerfile.name}: {rel} excluded by .dockerignore"


def test_dockerignore_keeps_weights_and_caches_out():
    for rel in ("runs/x/best.pt", "damo_core/__pycache__/a.pyc", ".git/HEAD", "tests/conftest.py"):
        assert not in_context(rel), rel


def exec_form(args: str) -> list[str]:
    return shlex.split(args.strip("[]").replace(",", " "))


@pytest.mark.parametrize("dockerfile", [p for p in DOCKERFILES if p.name != "Dockerfile.triton"],
                         ids=lambda p: p.name)
def test_entrypoint_and_damo_commands_exist(dockerfile):
    ops = instructions(dockerfile)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = [args for op, args in ops if op == "ENTRYPOINT"]
    assert entry and exec_form(entry[-1])[0] == "damo"
    assert "damo" in scripts
    runs = [a for op, a in ops if op == "RUN"]  # damo in command position only
    used = [m for a in runs for m in re.findall(r"(?:^|&&|;|\|\|)\s*damo\s+([a-z][\w-]*)", a)]
    cmd = [a for op, a in ops if op == "CMD"]
    used += [w for w in exec_form(cmd[-1]) if not w.startswith("-")][:1] if cmd else []
    assert used, f"{dockerfile.name} never runs a damo command"
    unknown = set(used) - damo_commands()
    assert not unknown, f"{dockerfile.name} calls damo commands that do not exist: {unknown}"


def test_triton_layer_serves_with_tritonserver_and_imports_the_python_models():
    """The Triton layer's entrypoint is the server; its build fails unless the modules the
    deployment's Python-backend models import are importable (damo_core.serve)."""
    ops = instructions(ROOT / "docker" / "Dockerfile.triton")
    assert exec_form([a for op, a in ops if op == "ENTRYPOINT"][-1])[0] == "tritonserver"
    imports = ",".join(re.findall(r"import ([\w., ]+)", " ".join(a for op, a in ops
                                                                if op == "RUN")))
    modules = {m.strip() for m in imports.split(",")}
    assert "damo_core.serve.python_models" in modules
    for module in modules:
        if module.startswith("damo_core"):
            importlib.import_module(module)
    manifest = yaml.safe_load_all((ROOT / "manifests/base/triton.yaml").read_text())
    deployment = next(d for d in manifest if d["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.rpartition(":")[0].endswith("/damo-triton"), image  # this layer, not stock


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_numeric_non_root_user(dockerfile):
    ops = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(ops) if op == "FROM")
    users = [args for op, args in ops[last_from:] if op == "USER"]
    assert users, f"{dockerfile.name}: final stage has no USER"
    assert users[-1].isdigit() and int(users[-1]) != 0  # numeric: runAsNonRoot can verify it
    entry_at = max(i for i, (op, _) in enumerate(ops) if op == "ENTRYPOINT")
    assert max(i for i, (op, _) in enumerate(ops) if op == "USER") < entry_at


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_versions_are_pinned(dockerfile):
    ops = instructions(dockerfile)
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for op, a in ops if op == "ARG" and "=" in a)
    pinned = {re.split(r"[=<>]", line)[0].lower() for line in CONSTRAINTS.read_text().split()
              if "==" in line}
    assert len(pinned) > 20
    assert ops[0][0] == "ARG" or ops[0][0] == "FROM"
    for op, a in ops:
        if op == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a.split()[0])
            if image in {x.split()[-1] for o, x in ops if o == "FROM" and " AS " in x.upper()}:
                continue
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest" and re.search(r"\d", tag), image
        if op == "RUN" and "pip install" in a:
            for part in a.split("&&"):
                words = shlex.split(part)
                starts = [i for i in range(len(words) - 1) if words[i:i + 2] == ["pip", "install"]]
                if not starts:
                    continue
                skip_next = False
                for w in words[starts[0] + 2:]:
                    # ".", "/wheels/x.whl": the project itself, built in the image
                    if skip_next or w.startswith("-") or w == "." or w.startswith("/"):
                        skip_next = w in ("-c", "--index-url", "-r")
                        continue
                    name = w.split("==")[0].lower()
                    assert "==" in w or name in pinned, f"{dockerfile.name}: {w} is not pinned"


def test_constraints_pin_exact_versions():
    lines = [x for x in CONSTRAINTS.read_text().splitlines() if x and not x.startswith("#")]
    bad = [x for x in lines if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[\w.+!-]+", x)]
    assert not bad, f"unpinned lines in {CONSTRAINTS.name}: {bad}"
    assert not [x for x in lines if x.startswith("torch==")]  # each Dockerfile picks its build


def test_constraints_cover_the_runtime_closure():
    """Every package the project needs at run time (pyproject's dependencies, recursively) is
    pinned: the images install docker/constraints.txt as their dependency layer, so a missing
    one would only show up as an ImportError in the image. Regenerate with
    ``python docker/constraints.py``."""
    spec = importlib.util.spec_from_file_location("constraints", ROOT / "docker/constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = set(module.closure(deps)) - module.LEFT_OUT
    pinned = {line.split("==")[0] for line in CONSTRAINTS.read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert not needed - pinned, f"not in {CONSTRAINTS.name}: {sorted(needed - pinned)}"
