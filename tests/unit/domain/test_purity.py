"""The domain is pure: the standard library, two codecs, and itself.

No Faust, no Kafka client, no web framework, no file or network access: the
rules run the same under the live stream, the offline replay and the tests.
orjson (JSON) and msgspec (typed JSON decoding, value objects) do no I/O.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import botstream.domain

DOMAIN = Path(botstream.domain.__file__).parent
CODECS = {"orjson", "msgspec"}
#: Standard modules that reach outside the process.
IO_MODULES = {"socket", "asyncio", "subprocess", "urllib", "http", "ssl", "selectors", "shutil"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_domain_modules_import_only_the_standard_library_the_codecs_and_the_domain() -> None:
    offending = {}
    for path in sorted(DOMAIN.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = (
                (top in sys.stdlib_module_names and top not in IO_MODULES)
                or top in CODECS
                or name == "__future__"
                or name.startswith("botstream.domain")
                or name == "botstream.errors"
            )
            if not allowed:
                offending.setdefault(path.name, []).append(name)
    assert offending == {}
    assert len(list(DOMAIN.glob("*.py"))) >= 10  # the scan saw the package
