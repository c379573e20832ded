#!/usr/bin/env python3
"""Build the services' wheelhouse on the control node, once per change.

Run by the service_wheelhouse role with the control node's Python (the
one running ansible-playbook). It:

  * hashes its inputs (the requirements lock, the service source trees, the
    target Python version and platforms);
  * returns at once when the archive in OUT_DIR was built from the same inputs;
  * otherwise downloads every pinned dependency as a binary wheel for the
    *hosts'* Python and platform (no compiler is ever needed on a host, and a
    control node with another Python still works), builds the service
    packages as wheels with SOURCE_DATE_EPOCH set (reproducible), and packs
    them into one deterministic tar archive, ``wheelhouse.tar``.

It prints one JSON object: {"changed": bool, "archive": path, "wheels": [...]}.
A lock file serialises concurrent runs (several plays or scenarios).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# Build output, caches and the packages' own tests: none of them end up in a wheel.
SKIPPED_NAMES = {
    "build",
    "dist",
    "tests",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def skipped(name: str) -> bool:
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


def source_files(root: Path) -> list[Path]:
    """Files of one package source tree, build output left out, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skipped(d))
        for name in sorted(filenames):
            if not skipped(name):
                found.append(Path(dirpath) / name)
    return found


def file_digest(path: Path) -> str:
    if not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_digest(args: argparse.Namespace) -> str:
    digest = hashlib.sha256()
    settings = {
        "python_version": args.python_version,
        "platforms": args.platform,
        "machine": args.machine,
        "source_date_epoch": args.source_date_epoch,
        "format": 2,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(Path(args.requirements).read_bytes())
    for package in args.package:
        root = Path(package)
        for path in source_files(root):
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(f"command failed ({result.returncode}): {' '.join(command)}\n")
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        sys.exit(1)


def pack(wheel_dir: Path, archive: Path, mtime: int) -> list[str]:
    """Write the wheels into a tar whose bytes depend only on the wheels."""
    names = sorted(p.name for p in wheel_dir.glob("*.whl"))
    partial = archive.with_suffix(".tar.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (wheel_dir / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    os.replace(partial, archive)
    return names


def target_environment(args: argparse.Namespace) -> dict[str, str]:
    """Marker variables of the hosts' interpreter (pip evaluates markers
    against the control node's own Python, even with --python-version)."""
    full = (
        args.python_version if args.python_version.count(".") == 2 else args.python_version + ".0"
    )
    return {
        "python_version": ".".join(full.split(".")[:2]),
        "python_full_version": full,
        "implementation_name": "cpython",
        "implementation_version": full,
        "platform_python_implementation": "CPython",
        "platform_machine": args.machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "extra": "",
    }


def wheel_requirements(wheel: Path) -> list:
    from pip._vendor.packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode("utf-8")
    return [
        Requirement(line.split(":", 1)[1].strip())
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def missing_requirements(wheels: Path, environment: dict[str, str]) -> list[str]:
    """Requirements of the wheels in the directory (with the extras that
    other wheels ask for) that apply on the hosts but that no wheel in the
    directory provides."""
    from pip._vendor.packaging.utils import canonicalize_name

    requirements = {}
    for wheel in wheels.glob("*.whl"):
        requirements[canonicalize_name(wheel.name.split("-")[0])] = wheel_requirements(wheel)
    extras: dict[str, set[str]] = {}
    for reqs in requirements.values():
        for req in reqs:
            extras.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    missing = set()
    for name, reqs in requirements.items():
        wanted = {""} | extras.get(name, set())
        for req in reqs:
            if req.marker is not None and not any(
                req.marker.evaluate(dict(environment, extra=extra)) for extra in wanted
            ):
                continue
            if canonicalize_name(req.name) not in requirements:
                missing.add(str(req).split(";")[0].strip())
    return sorted(missing)


def build(args: argparse.Namespace, work: Path) -> list[str]:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(args.source_date_epoch)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONHASHSEED"] = "0"
    wheels = work / "wheels"
    wheels.mkdir()
    download = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        args.python_version,
        "--implementation",
        "cp",
        "--dest",
        str(wheels),
    ]
    for platform in args.platform:
        download += ["--platform", platform]
    run([*download, "--requirement", args.requirements], env)
    for package in args.package:
        # Build from a clean copy so that no build output lands in the
        # repository and concurrent builds cannot see each other's files.
        source = work / "src" / Path(package).name
        shutil.copytree(package, source, ignore=lambda _d, names: [n for n in names if skipped(n)])
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(source),
            ],
            env,
        )
    # Requirements that apply only on the hosts' Python, or that the lock
    # file forgot, are fetched too (the latter with a warning).
    environment = target_environment(args)
    for _ in range(10):
        missing = missing_requirements(wheels, environment)
        if not missing:
            break
        sys.stderr.write(f"fetching requirements not pinned in {args.requirements}: {missing}\n")
        run(download + missing, env)
    else:
        sys.stderr.write(f"requirements still missing for the hosts' Python: {missing}\n")
        sys.exit(1)
    return pack(wheels, Path(args.out_dir) / "wheelhouse.tar", args.source_date_epoch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", required=True)
    parser.add_argument(
        "--package", action="append", required=True, help="service source directory"
    )
    parser.add_argument("--python-version", required=True, help="the hosts' Python, X.Y.Z")
    parser.add_argument("--machine", default="x86_64", help="the hosts' platform_machine")
    parser.add_argument("--platform", action="append", required=True, help="wheel platform tag")
    parser.add_argument("--source-date-epoch", type=int, default=315532800)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "wheelhouse.tar"
    stamp = out_dir / "inputs.sha256"
    with open(out_dir / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = inputs_digest(args)
        if (
            archive.is_file()
            and stamp.is_file()
            and stamp.read_text(encoding="utf-8").strip() == digest
        ):
            with tarfile.open(archive) as tar:
                names = tar.getnames()
            changed = False
        else:
            before = file_digest(archive)
            with tempfile.TemporaryDirectory(prefix="wheelhouse-", dir=out_dir) as work:
                names = build(args, Path(work))
            stamp.write_text(digest + "\n", encoding="utf-8")
            # Reproducible wheels: a change that does not reach a wheel
            # (a comment in the lock file, say) leaves the archive as it was.
            changed = file_digest(archive) != before
    json.dump(
        {"changed": changed, "archive": str(archive), "wheels": names, "inputs": digest}, sys.stdout
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
