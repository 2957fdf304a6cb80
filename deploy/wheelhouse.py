"""Build a wheelhouse: the wheels hpo-cls needs on a machine that reaches no package index.

    python deploy/wheelhouse.py --python-version 3.12 --exclude 'torch,torchvision,nvidia-*,cuda-*,triton' \
        --out .whl/cp312 [--parts .whl/cp312-parts --part-mib 60]

1. builds hpo-cls's own wheel from this checkout (``pip wheel --no-deps``);
2. resolves its runtime dependencies for the target Python and platform, pinned by constraints.txt (what CI
   tested), with ``pip install --dry-run --report`` (nothing is installed here);
3. leaves out the packages that --exclude names (shell-style patterns: what the machine already has, such as
   torch) and whatever only they need;
4. downloads the rest as binary wheels into --out (those already there are kept; others are removed);
5. with --parts, packs --out into one tar cut into parts of at most --part-mib MiB, with their SHA256SUMS,
   for a machine that takes files of limited size.

It prints what to run on the machine; docs/offline-install.md tells the whole path. Standard library only: it
runs with any Python that has pip, before hpo-cls is installed anywhere.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN_NAME = "hpo-cls"
PART_PREFIX = "wheelhouse.tar.part-"


def normalize(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution a ``Requires-Dist`` line names (``ray[tune]>=2; extra == "x"`` → ``ray``)."""
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def wheel_identity(wheel: Path) -> tuple[str, str]:
    """(normalized name, version) from a wheel's file name (``pydantic_core-2.5.0-cp312-...whl``)."""
    name, version = wheel.name.split("-")[:2]
    return normalize(name), version


def platform_tags(arch: str = "x86_64", glibc: str = "2.28") -> list[str]:
    """Every manylinux tag a Linux machine with glibc ``glibc`` accepts (pip matches --platform exactly)."""
    newest = int(glibc.split(".")[1])
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = ("2014", "2010", "1") if arch == "x86_64" else ("2014",)
    return tags + [f"manylinux{name}_{arch}" for name in legacy]


def target_flags(python_version: str, platforms: list[str]) -> list[str]:
    return ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            *[flag for tag in platforms for flag in ("--platform", tag)]]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build_own_wheel(out: Path) -> Path:
    """hpo-cls's wheel, built from this checkout into ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", tmp, str(REPO))
        (built,) = Path(tmp).glob("*.whl")
        return Path(built.replace(out / built.name))


def resolve(own_wheel: Path, constraints: Path, flags: list[str]) -> dict[str, dict]:
    """Everything installing ``own_wheel`` on the target would install: normalized name → the pip report's
    ``metadata`` (name, version, requires_dist)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), *flags,
            "--constraint", str(constraints), str(own_wheel))
        items = json.loads(report.read_text())["install"]
    return {normalize(item["metadata"]["name"]): item["metadata"] for item in items}


def needed(resolved: dict[str, dict], root: str, exclude: list[str]) -> list[str]:
    """The packages reachable from ``root`` without passing through one that ``exclude`` matches: what the
    machine lacks. Markers and extras are not evaluated: the resolution already left out what they exclude,
    and an edge taken for an extra nobody asked for at most keeps a wheel too many."""
    excluded = {name for name in resolved if any(fnmatch.fnmatch(name, normalize(p)) for p in exclude)}
    seen, stack = set(), [normalize(root)]
    while stack:
        name = stack.pop()
        if name in seen or name in excluded or name not in resolved:
            continue
        seen.add(name)
        stack += [requirement_name(r) for r in resolved[name].get("requires_dist") or []]
    return sorted(seen)


def split_into_parts(wheels: list[Path], parts_dir: Path, part_mib: int) -> list[Path]:
    """The wheels in one tar cut into numbered parts of at most ``part_mib`` MiB, and SHA256SUMS of the parts;
    ``cat wheelhouse.tar.part-* | tar -x`` joins them (the numbers sort)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    for old in [*parts_dir.glob(PART_PREFIX + "*"), parts_dir / "SHA256SUMS"]:
        old.unlink(missing_ok=True)
    part_size = part_mib * 2**20
    with tempfile.TemporaryFile() as joined:
        with tarfile.open(fileobj=joined, mode="w") as tar:
            for wheel in sorted(wheels):
                tar.add(wheel, arcname=wheel.name)
        size = joined.tell()
        joined.seek(0)
        parts = []
        for index in range(-(-size // part_size)):
            part = parts_dir / f"{PART_PREFIX}{index:02d}"
            part.write_bytes(joined.read(part_size))
            parts.append(part)
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in parts)
    (parts_dir / "SHA256SUMS").write_text(sums)
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the target machine's Python, e.g. 3.12 (default: this Python's)")
    parser.add_argument("--glibc", default="2.28", help="the target's glibc (ldd --version); default 2.28")
    parser.add_argument("--arch", default="x86_64", help="the target's processor: x86_64 or aarch64")
    parser.add_argument("--exclude", default="", help="comma-separated names or patterns the target already has, "
                        "e.g. 'torch,torchvision,nvidia-*,cuda-*,triton'")
    parser.add_argument("--constraints", type=Path, default=REPO / "constraints.txt",
                        help="pins (default: the repo's constraints.txt, what CI tested)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder of the wheels (kept between builds: only what changed is downloaded)")
    parser.add_argument("--parts", type=Path, help="also pack the wheels into parts in this folder")
    parser.add_argument("--part-mib", type=int, default=60, help="largest part, MiB (default 60)")
    args = parser.parse_args(argv)
    if not args.constraints.is_file():
        print(f"error: --constraints {args.constraints} is not a file", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    flags = target_flags(args.python_version, platform_tags(args.arch, args.glibc))
    own = build_own_wheel(args.out)
    resolved = resolve(own, args.constraints, flags)
    keep = needed(resolved, OWN_NAME, [p.strip() for p in args.exclude.split(",") if p.strip()])
    left_out = sorted(set(resolved) - set(keep))
    pins = [f"{resolved[name]['name']}=={resolved[name]['version']}" for name in keep if name != OWN_NAME]
    pip("download", "--quiet", "--no-deps", *flags, "--dest", str(args.out), *pins)  # skips wheels already there
    wanted = {(name, resolved[name]["version"]) for name in keep}
    for stale in [w for w in args.out.glob("*.whl") if wheel_identity(w) not in wanted]:
        stale.unlink()  # from an earlier build: another version, or a package now left out
    (args.out / "left-out.txt").write_text("".join(f"{resolved[n]['name']}=={resolved[n]['version']}\n"
                                                   for n in left_out))
    wheels = sorted(args.out.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.out}")
    print(f"left out (the target must have them; listed in {args.out / 'left-out.txt'}): "
          + (", ".join(left_out) or "nothing"))
    if args.parts:
        parts = split_into_parts(wheels, args.parts, args.part_mib)
        print(f"{len(parts)} parts of at most {args.part_mib} MiB in {args.parts}: "
              + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in parts))
        print("on the target, in the folder of the parts and SHA256SUMS:\n"
              f"  sha256sum -c SHA256SUMS && mkdir -p wheelhouse && cat {PART_PREFIX}* | tar -x -C wheelhouse")
    where = "wheelhouse" if args.parts else args.out
    print(f"then, in the environment that has what was left out:\n"
          f"  python -m pip install --no-index --find-links {where} {OWN_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
