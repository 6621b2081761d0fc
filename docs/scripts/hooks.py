"""MkDocs hooks (listed under ``hooks:`` in mkdocs.yml).

The package's docstrings use Sphinx roles (``:func:`name```), which Markdown renders as the
literal text ``:func:`` followed by inline code. This hook drops the role prefix so the
API reference shows just the code-formatted name.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
