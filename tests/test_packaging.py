import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_core_and_builtin_plugins_under_unique_names(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(REPO), "-w", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("aqa_framework-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "plugins" not in tops
    assert {"aqa_framework", "aqa_builtin"} <= tops
    # every built-in subpackage on disk is in the wheel
    for init in (REPO / "plugins" / "aqa_builtin").rglob("__init__.py"):
        rel = init.relative_to(REPO / "plugins").as_posix()
        assert rel in names
    # the scaffold templates are package data; the doc generator stays in the repository
    for template in (REPO / "aqa_framework" / "resources" / "scaffold").iterdir():
        assert f"aqa_framework/resources/scaffold/{template.name}" in names
    shipped = [n for n in names if n.startswith(("aqa_framework/docgen/", "docgen/"))]
    assert not shipped, f"{shipped} (left over in a stale build/ folder? remove it)"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "aqa = aqa_framework.cli.main:main" in text
