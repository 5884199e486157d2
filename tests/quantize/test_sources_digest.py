"""Cache keys follow what the renderer's code does, not how it is commented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bnnpose.quantize.code_digest import sources_digest

CODE = '''"""A module."""
#: a share
SHARE = 0.5


def draw(x):
    """Draw."""
    return x * SHARE  # scaled
'''


def _module(path: Path, text: str):
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_comments_and_docstrings_keep_the_digest_code_changes_it(tmp_path):
    base = sources_digest(_module(tmp_path / "a.py", CODE))
    reworded = (CODE.replace("A module.", "Renders things.").replace('"""Draw."""', "")
                .replace("# scaled", "# by the share").replace("#: a share", ""))
    assert sources_digest(_module(tmp_path / "b.py", reworded)) == base
    for name, old, new in (("c", "0.5", "0.6"), ("d", "x * SHARE", "x + SHARE")):
        assert sources_digest(_module(tmp_path / f"{name}.py", CODE.replace(old, new))) != base
