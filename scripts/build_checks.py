"""Build checks of scripts/images.sh that turn a broken image into one line naming the cause.

Why: a component whose image lacks a module its body imports fails only when a pipeline runs
that step on a cluster, with a traceback deep in the KFP executor's log; a Dockerfile COPY of
a path that is not in the build context fails the build with BuildKit's step log, where the
path sits between hundreds of lines. Both are caught here and said in one line each.

  python3 scripts/build_checks.py imports IMAGE SOURCE... [--components-of CONSTANT]
      imports, inside IMAGE (python3 on its PATH, no network), every module a SOURCE imports:
      components/NAME (the imports in its component function's body, which is what KFP runs
      in the container) or a Python file (the file's module and everything it imports).
      --components-of DAMO_IMAGE adds every component whose base_image is that constant of
      components/_image.py. Exit 1 with "IMAGE lacks module M (imported by SOURCE)" lines.
  python3 scripts/build_checks.py copy-errors LOG --image TAG --dockerfile FILE
      reads a failed `docker build --progress plain` log; for each COPY of a missing path
      prints "TAG: FILE: COPY of a missing path: PATH (step ...)". Exit 1 if there is none.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "DAMO-IMPORT-CHECK:"
IMPORT_TIMEOUT_S = 600  # importing torch and the steps in a cold container takes a while
# Run inside the image with only the standard library: import each module, look up each name
# (a name may also be a submodule), and print what failed as JSON after MARKER.
_PROBE = f"""
import importlib, json, sys
failures = []
for module, names in json.loads(sys.argv[1]):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        failures.append([module, None, err.name or module, str(err)])
        continue
    except Exception as err:
        failures.append([module, None, None, type(err).__name__ + ": " + str(err)])
        continue
    for name in names:
        if name == "*" or hasattr(mod, name):
            continue
        try:
            importlib.import_module(module + "." + name)
        except ImportError as err:
            failures.append([module, name, None, str(err)])
print({MARKER!r} + json.dumps(failures))
"""


@dataclass
class Wanted:
    """One module to import and the names taken from it, with the sources that import it."""

    module: str
    names: set[str] = field(default_factory=set)
    origins: list[str] = field(default_factory=list)


def _add(wanted: dict[str, Wanted], module: str, names: set[str], origin: str) -> None:
    item = wanted.setdefault(module, Wanted(module))
    item.names |= names
    if origin not in item.origins:
        item.origins.append(origin)


def _imports_in(nodes: list[ast.AST]) -> list[tuple[str, set[str]]]:
    """(module, names) of every absolute import statement under ``nodes``."""
    found: list[tuple[str, set[str]]] = []
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.module, {a.name for a in node.names}))
            elif isinstance(node, ast.Import):
                found.extend((a.name, set()) for a in node.names)
    return found


def _is_component(node: ast.AST) -> bool:
    """A function decorated with ``dsl.component(...)`` (or ``component(...)``)."""
    if not isinstance(node, ast.FunctionDef):
        return False
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Attribute | ast.Name) and \
                (getattr(target, "attr", None) or getattr(target, "id", None)) == "component":
            return True
    return False


def _base_image(node: ast.FunctionDef) -> str | None:
    """The name (or literal) given as ``base_image=`` to the component decorator."""
    for deco in node.decorator_list:
        for kw in deco.keywords if isinstance(deco, ast.Call) else []:
            if kw.arg == "base_image":
                value = kw.value
                return value.id if isinstance(value, ast.Name) else ast.literal_eval(value)
    return None


def _component_functions(path: Path) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [n for n in tree.body if _is_component(n)]
    if not found:
        raise SystemExit(f"{_rel(path)}: no @dsl.component function in it")
    return found  # type: ignore[return-value]


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _module_name(path: Path) -> str:
    """The dotted module name of a file of this repository (damo_core/serve/x.py -> ...)."""
    rel = Path(_rel(path))
    if rel.is_absolute():
        raise SystemExit(f"{path}: not a file of this repository; cannot name its module")
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _component_file(source: str) -> Path | None:
    """components/NAME or components/NAME/component.py as the component file, else None."""
    path = (ROOT / source) if not Path(source).is_absolute() else Path(source)
    if path.is_dir() and (path / "component.py").is_file():
        return path / "component.py"
    return path if path.name == "component.py" and path.is_file() else None


def components_using(constant: str) -> list[str]:
    """components/NAME of every component whose ``base_image=`` is ``constant``."""
    return [_rel(path.parent) for path in sorted((ROOT / "components").glob("*/component.py"))
            if any(_base_image(f) == constant for f in _component_functions(path))]


def collect(sources: list[str], components_of: str | None = None) -> dict[str, Wanted]:
    """What each source needs importable, keyed by module."""
    wanted: dict[str, Wanted] = {}
    if components_of:
        sources = [*sources, *components_using(components_of)]
    for source in sources:
        component = _component_file(source)
        if component is not None:
            origin = _rel(component.parent)
            for module, names in _imports_in(list(_component_functions(component))):
                _add(wanted, module, names, origin)
            continue
        path = Path(source) if Path(source).is_absolute() else ROOT / source
        if path.suffix != ".py" or not path.is_file():
            raise SystemExit(f"{source}: neither components/NAME nor a Python file")
        origin = _rel(path)
        _add(wanted, _module_name(path), set(), origin)
        for module, names in _imports_in([ast.parse(path.read_text(), filename=str(path))]):
            _add(wanted, module, names, origin)
    return wanted


def docker_command(docker: str, image: str, wanted: dict[str, Wanted]) -> list[str]:
    """``docker run`` of the probe in ``image``: its own python3, no network, removed after."""
    payload = json.dumps([[w.module, sorted(w.names)] for w in wanted.values()])
    return [docker, "run", "--rm", "--network", "none", "--pull", "never",
            "--entrypoint", "python3", image, "-c", _PROBE, payload]


def describe(image: str, wanted: dict[str, Wanted], failures: list[list[str | None]]) -> list[str]:
    """One line per failed import, naming the image, the module and who imports it."""
    lines = []
    for module, name, missing, error in failures:
        assert module is not None
        by = ", ".join(wanted[module].origins)
        if name is not None:
            lines.append(f"{image} lacks {module}.{name} (imported by {by}): {error}")
        elif missing is None:
            lines.append(f"{image} cannot import module {module} (imported by {by}): {error}")
        elif missing == module or module.startswith(missing + "."):
            lines.append(f"{image} lacks module {missing} (imported by {by})")
        else:
            lines.append(f"{image} lacks module {missing}, which {module} needs "
                         f"(imported by {by})")
    return lines


def check_imports(image: str, wanted: dict[str, Wanted], docker: str) -> list[str]:
    """Problems found in ``image`` (empty: every module and name imports)."""
    try:
        done = subprocess.run(docker_command(docker, image, wanted), capture_output=True,
                              text=True, timeout=IMPORT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return [f"{image}: the import check did not finish within {IMPORT_TIMEOUT_S} s"]
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            return describe(image, wanted, json.loads(line[len(MARKER):]))
    said = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return [f"{image}: the import check could not run (docker exit {done.returncode}): {said}"]


# --- COPY of a missing path in a BuildKit log ------------------------------------------------
_STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
_MISSING = [  # BuildKit's ways of saying a COPY/ADD source is not there, on its step's line
    re.compile(r'^#(\d+) ERROR: .*?"(?P<path>/[^"]+)":? not found'),  # build context
    re.compile(r"^#(\d+) ERROR: l?stat \S*?/merged(?P<path>/\S+): no such file"),  # --from
]
_SUMMARY = re.compile(r'failed to compute cache key: .*?"(?P<path>/[^"]+)":? not found')


def _copies(step: str) -> bool:
    """Whether a step ("[stage 2/5] COPY a b") copies files in (unknown steps count)."""
    return not step or step.split("] ", 1)[-1].startswith(("COPY ", "ADD "))


def copy_failures(log: str) -> list[tuple[str, str]]:
    """(path, step) for each COPY/ADD source the build could not find, in log order."""
    steps: dict[str, str] = {}
    found: list[tuple[str, str]] = []
    for line in log.splitlines():
        step = _STEP.match(line)
        if step:
            steps[step.group(1)] = f"[{step.group(2)}] {step.group(3)}"
            continue
        hit = next((m for p in _MISSING if (m := p.match(line))), None)
        if hit and _copies(steps.get(hit.group(1), "")):
            item = (hit.group("path").lstrip("/"), steps.get(hit.group(1), "?"))
            if item not in found:
                found.append(item)
    if not found:  # a log without step lines: BuildKit's last line still names the path
        found = [(m.group("path").lstrip("/"), "?") for m in _SUMMARY.finditer(log)]
    return found


def _imports_main(args: argparse.Namespace) -> int:
    docker = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
    if docker is None:
        print(f"{args.image}: cannot check its imports: no docker client", file=sys.stderr)
        return 2
    wanted = collect(args.sources, args.components_of)
    if not wanted:
        print(f"{args.image}: nothing to check (no sources)", file=sys.stderr)
        return 2
    problems = check_imports(args.image, wanted, docker)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        origins = {o for w in wanted.values() for o in w.origins}
        print(f"{args.image}: imports ok ({len(wanted)} modules, imported by "
              f"{', '.join(sorted(origins))})", file=sys.stderr)
    return 1 if problems else 0


def _copy_main(args: argparse.Namespace) -> int:
    failures = copy_failures(Path(args.log).read_text(errors="replace"))
    for path, step in failures:
        # images.sh builds with the repository as the context: a path that is here but was
        # not found is one .dockerignore leaves out
        ignored = "; it exists here, so .dockerignore leaves it out of the build context" \
            if (ROOT / path).exists() and "--from" not in step else ""
        print(f"{args.image}: {args.dockerfile}: COPY of a missing path: {path} (step {step}"
              f"{ignored})", file=sys.stderr)
    return 0 if failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imports = sub.add_parser("imports", help="import what components/files need in an image")
    imports.add_argument("image")
    imports.add_argument("sources", nargs="*", help="components/NAME or a Python file")
    imports.add_argument("--components-of", help="constant of components/_image.py")
    imports.set_defaults(run=_imports_main)
    copy = sub.add_parser("copy-errors", help="COPY of missing paths in a failed build's log")
    copy.add_argument("log")
    copy.add_argument("--image", required=True)
    copy.add_argument("--dockerfile", required=True)
    copy.set_defaults(run=_copy_main)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
