#!/usr/bin/env python
"""Fetch the wheels of tools/benchmarks/gpu_wheels.txt for the GPU machine (Python 3.12, manylinux x86_64)
into the git-ignored .whl/ folder, then check the folder.

    python tools/benchmarks/download_gpu_wheels.py            # download (PyPI) + check
    python tools/benchmarks/download_gpu_wheels.py --check    # check an existing .whl/ only (no network)

The check: exactly one wheel per listed requirement and no other file; the total at most 64 MiB (what
travels to the machine); every dependency a wheel declares (markers evaluated for Python 3.12 on Linux)
is another listed wheel, a package of the machine, or one the list marks as not needed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[2]
WHEEL_LIST = REPO / "tools" / "benchmarks" / "gpu_wheels.txt"
LIMIT_BYTES = 64 * 2**20
TARGET_MARKERS = {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "os_name": "posix",
    "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "extra": "",
}  # fmt: skip
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]


@dataclass
class WheelList:
    """The parsed gpu_wheels.txt: requirements with their fetch kind, and the names met elsewhere."""

    requirements: dict[str, tuple[Requirement, str]]  # canonical name -> (requirement, fetch kind)
    machine: set[str]
    not_needed: set[str]


def read_wheel_list(path: Path = WHEEL_LIST) -> WheelList:
    requirements, machine, not_needed = {}, set(), set()
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        for prefix, names in (("# machine:", machine), ("# not needed:", not_needed)):
            if line.startswith(prefix):
                names.update(canonicalize_name(n) for n in line[len(prefix) :].split("(")[0].split())
        if not line or line.startswith("#"):
            continue
        spec, _, comment = line.partition("#")
        requirement = Requirement(spec.strip())
        if len(requirement.specifier) != 1 or next(iter(requirement.specifier)).operator != "==":
            raise ValueError(f"{path}:{number}: pin {requirement.name} with == (got {requirement.specifier})")
        fetch = re.search(r"fetch:\s*(\w+)", comment)
        kind = fetch.group(1) if fetch else "binary"
        if kind not in ("binary", "build", "py310"):
            raise ValueError(f"{path}:{number}: unknown fetch kind {kind!r} (binary, build or py310)")
        requirements[canonicalize_name(requirement.name)] = (requirement, kind)
    return WheelList(requirements, machine, not_needed)


def download(wheels: WheelList, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    for requirement, kind in wheels.requirements.values():
        spec = str(requirement)
        if kind == "build":  # pure-Python sdist: the wheel built here is py3-none-any
            command = [*pip, "wheel", "--no-deps", "--no-binary", requirement.name, "-w", str(folder), spec]
        else:
            version = "3.10" if kind == "py310" else "3.12"
            command = [*pip, "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp"]
            command += ["--python-version", version, "-d", str(folder), spec]
            command += [flag for platform in [*PLATFORMS, "any"] for flag in ("--platform", platform)]
        print(f"[wheels] {spec} ({kind})", flush=True)
        subprocess.run(command, check=True)


def check(wheels: WheelList, folder: Path) -> list[str]:
    """Problems with the wheels in ``folder`` (empty: ready to carry)."""
    problems, found = [], {}
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    for path in files:
        if path.suffix != ".whl":
            problems.append(f"{path.name}: not a wheel")
            continue
        name, version, _, tags = parse_wheel_filename(path.name)
        if name in found:
            problems.append(f"two wheels of {name}: {found[name][0].name} and {path.name}")
        found[name] = (path, version, tags)
    for name, (requirement, kind) in wheels.requirements.items():
        if name not in found:
            problems.append(f"{requirement}: no wheel in {folder}")
            continue
        path, version, tags = found[name]
        if str(version) not in requirement.specifier:
            problems.append(f"{path.name}: version {version}, the list asks for {requirement}")
        interpreters = {tag.interpreter for tag in tags}
        if kind == "build" and interpreters != {"py3"}:
            problems.append(f"{path.name}: a built wheel must be pure Python (py3-none-any)")
    for name in sorted(set(found) - set(wheels.requirements)):
        problems.append(f"{found[name][0].name}: not in {WHEEL_LIST.name}")
    known = set(wheels.requirements) | wheels.machine | wheels.not_needed
    for path, _, _ in sorted(found.values()):
        for dependency in _declared_dependencies(path):
            if canonicalize_name(dependency.name) not in known:
                problems.append(f"{path.name} needs {dependency}: neither a listed wheel nor on the machine")
    total = sum(path.stat().st_size for path in files)
    if total > LIMIT_BYTES:
        problems.append(
            f"{total / 2**20:.1f} MiB of wheels, more than the {LIMIT_BYTES // 2**20} MiB that travel"
        )
    print(f"[wheels] {len(files)} files, {total / 2**20:.1f} MiB in {folder}")
    return problems


def _declared_dependencies(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist entries that apply on the machine (markers evaluated, extras skipped)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
    requirements = [Requirement(value) for value in metadata.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(TARGET_MARKERS)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=REPO / ".whl")
    parser.add_argument("--check", action="store_true", help="only check the folder (no download)")
    args = parser.parse_args()
    wheels = read_wheel_list()
    if not args.check:
        download(wheels, args.folder)
    problems = check(wheels, args.folder)
    for problem in problems:
        print(f"[wheels] problem: {problem}", file=sys.stderr)
    print("[wheels] ready to carry" if not problems else f"[wheels] {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
