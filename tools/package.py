"""Build the bundle an administrator uploads to Workbooks.

    python -m tools.package [--out dist]

Writes `dist/<name>-<version>.zip` (manifest.yaml, scripts/, plugin/, mappings/; never tests,
tools or caches) and `dist/<name>-<version>.zip.sha256` beside it (`sha256sum -c` format).
The archive is deterministic: sorted entries, fixed timestamps and permissions, so the same
sources always give the same checksum. It refuses to build, naming each file and line, when
the manifest or any bundled mapping does not validate.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What the bundle holds, relative to the repository root.
INCLUDE = ("manifest.yaml", "scripts", "plugin", "mappings")
#: Earliest time a zip can record; any fixed value makes the archive reproducible.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
MAPPING_SUFFIXES = (".yaml", ".yml")


class PackageRefused(Exception):
    """The sources do not validate; `problems` are `FILE:LINE:COL: … — …` lines."""

    def __init__(self, problems: list[str]):
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def bundled_files(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(name in the archive, file) for everything shipped, sorted by name."""
    found: list[tuple[str, Path]] = []
    for top in INCLUDE:
        path = root / top
        if path.is_file():
            found.append((top, path))
            continue
        if not path.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            # Pruned in place so os.walk never descends into caches or hidden folders.
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
            for name in filenames:
                file = Path(dirpath) / name
                if _skipped(name) or not file.is_file():
                    continue
                found.append((file.relative_to(root).as_posix(), file))
    return sorted(found)


def _skipped(name: str) -> bool:
    return (name == "__pycache__" or name.startswith(".") or name.endswith(("~", ".pyc", ".pyo", ".swp"))
            or name.endswith(".egg-info"))


def problems(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(errors, warnings): every reason not to build — manifest problems (its scripts must
    exist), then each bundled mapping's errors — and the mappings' warnings, which do not stop it."""
    from plugin.manifest import validate_manifest_file

    errors = [str(p) for p in validate_manifest_file(root / "manifest.yaml", check_files=True)]
    warnings: list[str] = []
    mappings = sorted(p for p in (root / "mappings").rglob("*")
                      if p.suffix in MAPPING_SUFFIXES and p.is_file() and not _skipped(p.name))
    if mappings:
        from plugin.mapping import validate_mapping_file
        for path in mappings:
            for problem in validate_mapping_file(_shown(path, root)):
                (errors if getattr(problem, "is_error", True) else warnings).append(str(problem))
    return errors, warnings


def _shown(path: Path, root: Path) -> Path:
    """Relative to the working folder when it is inside it, so problems read `mappings/x.yaml:3:1`."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def archive_name(root: Path = ROOT) -> str:
    from plugin.manifest import load_manifest

    manifest = load_manifest(root / "manifest.yaml")
    return f"{manifest.name}-{manifest.version}.zip"


@dataclass
class Built:
    archive: Path
    checksum: Path
    digest: str
    files: int
    warnings: list[str]


def build(out: Path, root: Path = ROOT) -> Built:
    """Validate, then write the archive and its checksum."""
    refused, warnings = problems(root)
    if refused:
        raise PackageRefused(refused)
    out.mkdir(parents=True, exist_ok=True)
    target = out / archive_name(root)
    # Written beside the target and renamed, so a failed build never leaves half an archive.
    handle, temp_name = tempfile.mkstemp(prefix=".package-", suffix=".zip", dir=out)
    os.close(handle)
    files = bundled_files(root)
    try:
        with zipfile.ZipFile(temp_name, "w") as archive:
            for name, path in files:
                info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3                      # "Unix", whatever builds it
                info.external_attr = (0o100644 & 0xFFFF) << 16
                archive.writestr(info, path.read_bytes(), compresslevel=9)
        os.chmod(temp_name, 0o644)                      # mkstemp made it private
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    checksum = target.with_name(target.name + ".sha256")
    checksum.write_text(f"{digest}  {target.name}\n", encoding="utf-8")
    return Built(target, checksum, digest, len(files), warnings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist", help="output folder (default: dist)")
    args = parser.parse_args(argv)
    try:
        built = build(Path(args.out), root=ROOT)
    except PackageRefused as exc:
        print(f"package: not built, {len(exc.problems)} problem(s) to fix first:", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    for warning in built.warnings:
        print(f"package: {warning}", file=sys.stderr)
    print(f"package: {built.archive} ({built.files} files, {built.archive.stat().st_size} bytes)")
    print(f"package: {built.checksum} sha256 {built.digest}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
