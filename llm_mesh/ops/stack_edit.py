"""Editing a stack file in place: a change touches only its own lines.

Comments, key order, quoting, anchors and aliases stay as written (ruamel.yaml's round trip). A file is
edited only when loading and dumping it unchanged gives back its exact bytes, so any difference in the
written file is the edit itself. ruamel keeps the comment lines that follow an entry on the deepest last
node before them; `StackFileEdit.set` moves them along, so that they stay above the key they describe.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

from llm_mesh.engine.stackfile import StackFileError

# Indentations in use (mapping, sequence, dash offset), most common first: the first that reproduces the file
# is the file's own. Sequence indents count to the item's content, dash offset to the dash.
_STYLES = [(2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 2), (4, 2, 0)]

Collection = CommentedMap | CommentedSeq
Position = tuple[Collection, Any]  # a container and the key (or index) of one of its entries


class StackFileEdit:
    """A stack file loaded for a round-trip edit; `save` writes it back atomically."""

    def __init__(self, path: Path, text: str, data: CommentedMap, yaml: YAML) -> None:
        self.path, self.original, self.data, self._yaml = path, text, data, yaml

    @classmethod
    def open(cls, path: Path) -> StackFileEdit:
        with path.open(encoding="utf-8", newline="") as stream:  # newline="": see the file's own line ends
            text = stream.read()
        for mapping, sequence, offset in _STYLES:
            yaml = YAML()
            yaml.preserve_quotes = True
            yaml.width = 4096  # never fold a long value onto a second line
            yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
            try:
                data = yaml.load(text)
            except YAMLError as exc:
                raise StackFileError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
            if not isinstance(data, CommentedMap):
                raise StackFileError(f"{path}: a YAML mapping was expected, found {type(data).__name__}")
            if _dump(yaml, data) == text:
                return cls(path, text, data, yaml)
        raise StackFileError(
            f"{path}: cannot be edited without rewriting lines other than the edit (a layout ruamel.yaml does "
            "not reproduce, e.g. CRLF line ends or uneven indentation); make the change by hand"
        )

    @property
    def config(self) -> CommentedMap:
        section = self.data.get("config")
        if not isinstance(section, CommentedMap):
            raise StackFileError(f"{self.path}: `config` must be a mapping of keys to values")
        return section

    def setting(self, full_key: str, project: str) -> Any:
        """The value of a config key such as `llm-mesh:models`, also when written without its namespace."""
        for key, value in self.config.items():
            if (key if ":" in key else f"{project}:{key}") == full_key:
                return value
        return None

    def text(self) -> str:
        return _dump(self._yaml, self.data)

    def set(self, mapping: CommentedMap, key: str, value: Any) -> None:
        """Set `key` (replacing its value in place, or appending it), keeping the comments that follow."""
        # The comment lines after the entry that ends up last of the change: the key's own, or the last key's.
        ends_change = key if key in mapping else next(reversed(mapping), None)
        following = self._take_following(mapping, ends_change) if ends_change is not None else ""
        mapping[key] = value
        self._give_following(mapping, key, following)

    def occurrences(self, node: Collection) -> list[Position]:
        """Every place the node appears (more than one: through YAML aliases), in file order."""
        return [(parent, key) for parent, key, value in _walk(self.data) if value is node]

    def save(self) -> bool:
        """Write the edited text atomically (a temp file, then os.replace); False when nothing changed."""
        text = self.text()
        if text == self.original:
            return False
        with self.path.open(encoding="utf-8", newline="") as stream:
            if stream.read() != self.original:
                raise StackFileError(f"{self.path}: changed by someone else since it was read; run again")
        write_atomically(self.path, text)
        self.original = text
        return True

    def _first(self, container: Collection, key: Any) -> bool:
        """Whether the entry's value is written here, not as an alias to an earlier place."""
        value = container[key]
        return next(((p, k) for p, k, v in _walk(self.data) if v is value), None) == (container, key)

    def _slot(self, container: Collection, key: Any) -> tuple[list[Any], int]:
        """The comment slot ruamel keeps for what follows this entry: on its value's deepest last entry."""
        while True:
            value = container[key]
            if _is_block(value) and len(value) and self._first(container, key):
                container, key = value, (next(reversed(value)) if isinstance(value, CommentedMap) else len(value) - 1)
                continue
            # ruamel's layout: a mapping entry's trailing comment at index 2, a sequence item's at index 0.
            return container.ca.items.setdefault(key, [None, None, None, None]), (
                2 if isinstance(container, CommentedMap) else 0
            )

    def _take_following(self, container: Collection, key: Any) -> str:
        """Detach the whole comment lines after an entry (an end-of-line comment stays where it is)."""
        items, index = self._slot(container, key)
        token = items[index]
        if token is None:
            return ""
        value = token.value
        end_of_line, _, following = value.partition("\n") if value.startswith("#") else ("", "", value[1:])
        if end_of_line:
            token.value = end_of_line + "\n"
        else:
            items[index] = None
        return following

    def _give_following(self, container: Collection, key: Any, following: str) -> None:
        if not following:
            return
        items, index = self._slot(container, key)
        token = items[index]
        if token is None:
            items[index] = CommentToken("\n" + following, CommentMark(0), None)
        else:
            token.value = token.value + following


def _is_block(node: Any) -> bool:
    return isinstance(node, (CommentedMap, CommentedSeq)) and not node.fa.flow_style()


def _walk(node: Any) -> Iterator[tuple[Collection, Any, Any]]:
    """(container, key, value) for every entry, in file order; a node reached again (an alias) is not re-entered."""
    seen: set[int] = set()

    def visit(container: Any) -> Iterator[tuple[Collection, Any, Any]]:
        if id(container) in seen:
            return
        seen.add(id(container))
        entries = container.items() if isinstance(container, CommentedMap) else enumerate(container)
        for key, value in entries:
            yield container, key, value
            if isinstance(value, (CommentedMap, CommentedSeq)):
                yield from visit(value)

    if isinstance(node, (CommentedMap, CommentedSeq)):
        yield from visit(node)


def _dump(yaml: YAML, data: Any) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def write_atomically(path: Path, text: str) -> None:
    """Replace the file's content all at once: a reader sees the old file or the new one, never a part."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
