"""The digest of the code that makes cached data: part of cache names and benchmark run keys."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def sources_digest(*modules) -> str:
    """Digest of the code of ``modules``: part of the cache keys, so that a change to the code
    that made the cached images (the renderer, the host's crop) never serves stale ones.

    It digests each module's syntax tree without docstrings, so that editing a comment or a
    docstring keeps the caches and the runs trained on them."""
    digest = hashlib.sha256()
    for module in modules:
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:10]
