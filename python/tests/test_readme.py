"""The README's Python examples run as written (example.org standing for
the test origin) and pass `mypy --strict`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest

from conftest import ROOT, Origin


def examples() -> List[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3, "the README's Python section lost its examples"
    return blocks


def site(root: Path) -> None:
    (root / "gallery.html").write_text(
        '<html><head><title>Gallery</title></head><body><div class="post">'
        '<img src="a.jpg"></div><a class="next" href="gallery-2.html">next</a></body></html>'
    )
    (root / "gallery-2.html").write_text(
        '<html><head><title>Gallery 2</title></head><body><div class="post">'
        '<img src="b.jpg"></div></body></html>'
    )
    for name in ["a.jpg", "b.jpg"]:
        (root / name).write_bytes(b"\xff\xd8\xff\xe0 " + name.encode())


def test_the_readme_examples_run(start_origin: Callable[..., Origin], tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    site(www)
    origin = start_origin("--static", str(www))
    work = tmp_path / "work"
    work.mkdir()
    (work / "urls.txt").write_text(
        "".join(origin.url(f"/file/u{i}.bin?size=100") + "\n" for i in range(10))
    )
    for i, block in enumerate(examples()):
        code = block.replace("https://example.org/", origin.url("/static/"))
        script = work / f"example_{i}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)], cwd=work, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"example {i}:\n{code}\n{done.stdout}{done.stderr}"
    assert len(list((work / "downloads").glob("u*.bin"))) == 10
    assert sorted(p.name for p in (work / "images" / "7").iterdir()) == ["a.jpg", "b.jpg"]
    assert (work / "gallery" / "Gallery 2" / "b.jpg").exists()


def test_the_readme_examples_type_check(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    files = []
    for i, block in enumerate(examples()):
        f = tmp_path / f"example_{i}.py"
        f.write_text(block)
        files.append(str(f))
    examples_dir = Path(__file__).resolve().parents[1] / "examples"
    files += [str(p) for p in sorted(examples_dir.glob("*.py"))]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
