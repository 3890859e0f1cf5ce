"""tools/package.py: the bundle holds exactly what ships, is reproducible, carries its checksum,
and is refused (naming file and line) when the manifest or a mapping does not validate."""
from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools import package

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("manifest.yaml", "scripts", "plugin", "mappings")
ALLOWED_THIRD_PARTY = {"requests", "yaml", "jsonschema", "urllib3"}   # urllib3 comes with requests


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the shipped parts of the repository, plus things that must NOT ship."""
    root = tmp_path / "src"
    root.mkdir()
    for name in SHIPPED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    runner = root / "scripts" / "outreach_send_receive.py"
    if not runner.exists():
        # The packager is under test here, not the runner (test_manifest checks that it exists).
        runner.write_text("def main():\n    return 0\n")
    for junk in ("tests/test_x.py", "tools/x.py", "plugin/__pycache__/x.cpython-312.pyc", "plugin/.x.swp",
                 "plugin/notes.py~", "README.md"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("not shipped\n")
    return root


def names_in(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as handle:
        return handle.namelist()


def test_the_bundle_holds_exactly_what_ships(tree, tmp_path):
    built = package.build(tmp_path / "dist", root=tree)

    assert built.archive.name == "outreach-sync-0.2.0.zip"
    names = names_in(built.archive)
    expected = sorted(p.relative_to(tree).as_posix() for top in SHIPPED for p in
                      ([tree / top] if (tree / top).is_file() else (tree / top).rglob("*"))
                      if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
                      and not p.name.endswith("~"))
    assert names == expected
    assert "manifest.yaml" in names and "plugin/install.py" in names and "scripts/outreach_install.py" in names
    assert "mappings/default.yaml" in names and "plugin/manifest.schema.json" in names
    assert not [n for n in names if n.startswith(("tests/", "tools/")) or "__pycache__" in n
                or n.endswith((".pyc", "~", ".swp")) or n == "README.md"]
    with zipfile.ZipFile(built.archive) as handle:
        assert handle.testzip() is None
        assert handle.read("plugin/install.py") == (tree / "plugin" / "install.py").read_bytes()


def test_the_checksum_file_matches(tree, tmp_path):
    built = package.build(tmp_path / "dist", root=tree)

    digest = hashlib.sha256(built.archive.read_bytes()).hexdigest()
    assert built.checksum.name == "outreach-sync-0.2.0.zip.sha256"
    assert built.checksum.read_text() == f"{digest}  outreach-sync-0.2.0.zip\n"
    check = subprocess.run(["sha256sum", "-c", built.checksum.name], cwd=built.archive.parent,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_builds_are_reproducible(tree, tmp_path):
    first = package.build(tmp_path / "one", root=tree)
    for path in tree.rglob("*"):                      # new timestamps, as after a fresh clone
        os.utime(path, (1_900_000_000, 1_900_000_000))
    second = package.build(tmp_path / "two", root=tree)

    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert first.digest == second.digest
    with zipfile.ZipFile(first.archive) as handle:
        assert {info.date_time for info in handle.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_version_names_the_archive(tree, tmp_path):
    manifest = tree / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("version: 0.2.0", "version: 0.3.1"))
    built = package.build(tmp_path / "dist", root=tree)
    assert built.archive.name == "outreach-sync-0.3.1.zip"


def test_an_invalid_manifest_is_refused_naming_file_and_line(tree, tmp_path):
    manifest = tree / "manifest.yaml"
    text = manifest.read_text().replace("every_minutes: 1", "every_minutes: -1")
    manifest.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "every_minutes" in t)

    with pytest.raises(package.PackageRefused) as refused:
        package.build(tmp_path / "dist", root=tree)

    [problem] = refused.value.problems
    assert problem.endswith(f"manifest.yaml:{line}:22: processes.scheduled[0].every_minutes — must be at "
                            "least 1 (got -1)")
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_a_missing_script_is_refused(tree, tmp_path):
    (tree / "scripts" / "outreach_authorise.py").unlink()
    with pytest.raises(package.PackageRefused) as refused:
        package.build(tmp_path / "dist", root=tree)
    assert any("the file scripts/outreach_authorise.py does not exist" in p for p in refused.value.problems)


def test_an_invalid_mapping_is_refused_naming_file_and_line(tree, tmp_path):
    broken = tree / "mappings" / "custom.yaml"
    broken.write_text("version: 1\nobjects:\n  person:\n    target: prospect\n    fields: 12\n")

    with pytest.raises(package.PackageRefused) as refused:
        package.build(tmp_path / "dist", root=tree)

    assert refused.value.problems
    assert all("custom.yaml:" in p for p in refused.value.problems)
    assert any(p.split("custom.yaml:")[1].split(":")[0].isdigit() for p in refused.value.problems)


def test_the_command_line_builds_the_real_repository(tmp_path):
    out = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-m", "tools.package", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    archive = out / "outreach-sync-0.2.0.zip"
    assert archive.is_file() and (out / "outreach-sync-0.2.0.zip.sha256").is_file()
    assert f"package: {archive} (" in done.stdout
    assert "scripts/outreach_send_receive.py" in names_in(archive)


def test_the_bundle_carries_the_outreach_attribute_facts_the_catalogue_reads(tmp_path):
    """plugin/catalogue.py reads plugin/data/outreach-attributes.json at import: unpacked alone,
    the bundle knows Outreach's limits (twitterUrl 1000, issue 16 §3)."""
    built = package.build(tmp_path / "dist", root=ROOT)
    assert "plugin/data/outreach-attributes.json" in names_in(built.archive)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built.archive) as handle:
        handle.extractall(unpacked)
    done = subprocess.run([sys.executable, "-c", "from plugin import catalogue; "
                           "print(catalogue.attribute('prospect', 'twitterUrl').max_length)"],
                          cwd=unpacked, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(unpacked)})
    assert done.stdout.strip() == "1000", done.stdout + done.stderr


def test_the_command_line_refuses_with_problems_on_stderr(tree, tmp_path):
    (tree / "mappings" / "broken.yaml").write_text("version: 2\n")
    done = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from tools import package; "
                           f"package.ROOT = Path({str(tree)!r}); sys.exit(package.main(['--out', {str(tmp_path / 'd')!r}]))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "package: not built" in done.stderr
    assert "broken.yaml:1:" in done.stderr


def test_shipped_code_imports_only_the_stdlib_and_the_three_runtime_dependencies():
    offenders = []
    for path in sorted([*(ROOT / "plugin").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY and top != "plugin":
                    offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []
