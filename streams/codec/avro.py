"""Avro codecs for the topic values of docs/behaviour.md §4, on fastavro.

Schemas live in ``schemas/<namespace>.<Name>.avsc``, one named type per file;
a file that uses another named type refers to it by full name (for example
``forgeone.trust.Identity``).  :class:`SchemaSet` reads and parses each file
once, on first use, dependencies first, so every named type is parsed exactly
once and each parsed schema carries only the named types it needs (fastavro
copies that table on every call, so a small one is measurably faster).

Values are plain Avro binary, or the Confluent wire format (magic byte 0, a
4-byte big-endian schema id, then Avro binary) when a codec is built with a
``schema_id``.  Every failure raises :class:`~streams.errors.CodecError`.

The hot path is not fastavro itself: each codec compiles its schema once
into straight Python (:mod:`streams.codec._fast`, 2-3x faster on the engine's
batches) and hands anything unusual -- odd types, truncated or malformed
bytes -- to fastavro, so results and errors are fastavro's.
``TRUST_CODEC_COMPILED=0`` keeps every codec on fastavro alone.

``encode`` trusts the caller's types for speed: fastavro refuses a missing
field, a non-string where a string belongs or an unknown enum symbol, but
coerces some values (a ``str`` where a list is expected becomes a list of
characters, ``1.5`` in a ``long`` becomes 1, ``"yes"`` in a ``boolean``
becomes True, ``"0.5"`` in a ``double`` becomes 0.5) and ignores unknown
fields.  Records from outside the engine go through :meth:`AvroCodec.check`
(strict, about 60% of the cost of encoding) first.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fastavro
from fastavro.schema import parse_schema

from streams.codec._check import compile_checker
from streams.codec._fast import compile_codec
from streams.errors import CodecError
from streams.settings import Settings

NAMESPACE = "forgeone.trust"


def _schema_dir(settings: "Settings | None" = None) -> Path:
    """TRUST_SCHEMA_DIR if set; else the schemas a wheel installs as the data
    package ``streams._schemas`` (see pyproject.toml); else the source tree's
    top-level ``schemas/`` (a checkout, an editable install)."""
    override = (settings or _SETTINGS).schema_dir
    if override:
        return override
    package = Path(__file__).resolve().parents[1]
    installed = package / "_schemas"
    return installed if installed.is_dir() else package.parent / "schemas"


_SETTINGS = Settings.from_env()  # read once, at import
SCHEMA_DIR = _schema_dir()
MAGIC = 0
# TRUST_CODEC_COMPILED=0 keeps every codec on fastavro alone (for comparisons).
COMPILED = _SETTINGS.codec_compiled
_HEADER = struct.Struct(">BI")  # magic byte, schema id (Confluent wire format)
_PRIMITIVES = frozenset(
    ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
)


def short_name(name: str) -> str:
    """`forgeone.trust.Decision` -> `Decision` (names in messages are short)."""
    return name.rsplit(".", 1)[-1]


def _references(schema: Any, out: list[str]) -> list[str]:
    """Full names of the named types `schema` refers to, in document order."""
    if isinstance(schema, str):
        if schema not in _PRIMITIVES and schema not in out:
            out.append(schema)
    elif isinstance(schema, list):
        for branch in schema:
            _references(branch, out)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error"):
            for field in schema["fields"]:
                _references(field["type"], out)
        elif kind == "array":
            _references(schema["items"], out)
        elif kind == "map":
            _references(schema["values"], out)
        elif kind not in ("enum", "fixed"):
            _references(kind, out)
    return out


class SchemaSet:
    """The ``.avsc`` files of one directory, each read and parsed once, on first use."""

    def __init__(self, directory: Path | str = SCHEMA_DIR, namespace: str = NAMESPACE):
        self.directory = Path(directory)
        self.namespace = namespace
        self._raw: dict[str, dict] = {}
        self._parsed: dict[str, dict] = {}
        self._named: dict[str, dict] = {}  # full name -> named types it needs, itself included
        self._lock = threading.RLock()

    def full_name(self, name: str) -> str:
        return name if "." in name else f"{self.namespace}.{name}"

    def names(self) -> tuple[str, ...]:
        """Short names of every schema in the directory, sorted."""
        prefix = self.namespace + "."
        return tuple(
            sorted(
                p.name[len(prefix) : -len(".avsc")]
                for p in self.directory.glob(f"{prefix}*.avsc")
            )
        )

    def path(self, name: str) -> Path:
        path = self.directory / f"{self.full_name(name)}.avsc"
        if not path.is_file():
            known = ", ".join(f"`{n}`" for n in self.names()) or "none"
            raise CodecError(
                f"unknown schema `{short_name(name)}` (no `{path.name}` in `{self.directory}`; known: {known})"
            )
        return path

    def raw(self, name: str) -> dict:
        """The schema as written in its file (do not mutate)."""
        full = self.full_name(name)
        raw = self._raw.get(full)
        if raw is None:
            path = self.path(full)
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CodecError(f"schema file `{path}` cannot be read: {exc}") from exc
            self._raw[full] = raw
        return raw

    def parsed(self, name: str) -> dict:
        """The fastavro-parsed schema, ready for the fast reader and writer."""
        full = self.full_name(name)
        schema = self._parsed.get(full)
        if schema is not None:
            return schema
        with self._lock:
            if full not in self._parsed:
                self._parse(full, ())
            return self._parsed[full]

    def _parse(self, full: str, stack: tuple[str, ...]) -> None:
        if full in stack:
            raise CodecError(f"schema `{short_name(full)}` refers to itself through {' -> '.join(stack)}")
        raw = self.raw(full)
        named: dict[str, dict] = {}
        for dep in _references(raw, []):
            if dep not in self._parsed:
                self._parse(dep, stack + (full,))
            named.update(self._named[dep])
        try:
            schema = parse_schema(raw, named_schemas=named)
        except Exception as exc:  # fastavro raises several kinds; all mean a bad file
            raise CodecError(f"schema `{short_name(full)}` does not parse: {exc}") from exc
        if schema.get("name") != full:
            raise CodecError(
                f"schema file `{self.path(full).name}` defines `{schema.get('name')}`, expected `{full}`"
            )
        self._named[full] = named
        self._parsed[full] = schema

    def standalone(self, name: str) -> dict:
        """The schema with every named type it uses written out at its first use.

        This is the form for Avro container headers and schema registries:
        self-contained, still one definition per named type.
        """
        seen: set[str] = set()

        def inline(schema: Any) -> Any:
            if isinstance(schema, str):
                if schema in _PRIMITIVES or schema in seen:
                    return schema
                return inline(self.raw(schema))
            if isinstance(schema, list):
                return [inline(branch) for branch in schema]
            kind = schema["type"]
            out = dict(schema)
            if kind in ("record", "error", "enum", "fixed"):
                named = schema["name"]
                seen.add(named if "." in named else f"{schema.get('namespace', self.namespace)}.{named}")
            if kind in ("record", "error"):
                out["fields"] = [dict(f, type=inline(f["type"])) for f in schema["fields"]]
            elif kind == "array":
                out["items"] = inline(schema["items"])
            elif kind == "map":
                out["values"] = inline(schema["values"])
            return out

        return inline(self.raw(name))


_SCHEMAS = SchemaSet()


class AvroCodec:
    """Encode and decode the values of one schema.

    Plain Avro binary when ``schema_id`` is None, else Confluent wire format
    with that id.  Build through :func:`codec`, which caches one per
    (name, schema_id).  Safe to share between threads.
    """

    __slots__ = ("name", "schema_id", "schema", "_label", "_header", "_checker", "_fast_encode", "_fast_decode")

    def __init__(self, schema: dict, schema_id: int | None = None):
        _check_schema_id(schema_id)
        self.name: str = schema["name"]
        self.schema_id = schema_id
        self.schema = schema
        self._label = short_name(self.name)
        self._header = b"" if schema_id is None else _HEADER.pack(MAGIC, schema_id)
        self._checker: Callable[[Any], str | None] | None = None
        fast = compile_codec(schema) if COMPILED else None
        self._fast_encode, self._fast_decode = fast if fast is not None else (None, None)

    def __repr__(self) -> str:
        return f"AvroCodec({self._label!r}, schema_id={self.schema_id!r})"

    def encode(self, record: Mapping[str, Any]) -> bytes:
        fast = self._fast_encode
        if fast is not None:
            try:
                return self._header + fast(record)
            except Exception:  # anything unusual: fastavro decides (result or error)
                pass
        out = io.BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except Exception as exc:  # ValueError, TypeError, OverflowError, AttributeError...
            problem = self.problem(record) or str(exc)
            raise CodecError(f"cannot encode `{self._label}`: {problem}") from exc
        return out.getvalue()

    def decode(self, data: bytes | bytearray | memoryview) -> dict:
        header = self._header
        if header and data[:5] != header:
            raise CodecError(f"cannot decode `{self._label}`: {self._header_problem(data)}")
        fast = self._fast_decode
        if fast is not None:
            try:
                return fast(data if type(data) is bytes else bytes(data), len(header))
            except Exception:  # truncated, trailing or odd bytes: fastavro says what is wrong
                pass
        fo = io.BytesIO(data)
        if header:
            fo.seek(5)
        try:
            record = fastavro.schemaless_reader(fo, self.schema, None)
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ValueError...
            truncated = fo.tell() >= len(data)
            raise CodecError(f"cannot decode `{self._label}`: {_decode_problem(exc, truncated)}") from exc
        end, size = fo.tell(), len(data)
        if end != size:
            raise CodecError(
                f"cannot decode `{self._label}`: {size - end} trailing byte(s) after the value"
            )
        return record

    def problem(self, record: Any) -> str | None:
        """The first thing that makes `record` invalid for this schema, or None.

        Stricter than fastavro: exact types (a bool is not a number, a str is
        not a list), unknown fields refused, int/long ranges checked.
        """
        checker = self._checker
        if checker is None:
            checker = self._checker = compile_checker(self.schema)
        return checker(record)

    def check(self, record: Any) -> None:
        """Raise CodecError naming the first invalid field of `record`, if any."""
        problem = self.problem(record)
        if problem is not None:
            raise CodecError(f"invalid `{self._label}` record: {problem}")

    def _header_problem(self, data: bytes | bytearray | memoryview) -> str:
        if len(data) < 5:
            return f"{len(data)} byte(s) is shorter than the 5-byte wire format header"
        if data[0] != MAGIC:
            return f"magic byte is `{data[0]}`, expected `{MAGIC}` (not Confluent wire format)"
        found = int.from_bytes(data[1:5], "big")
        return f"schema id is `{found}`, expected `{self.schema_id}`"


def _check_schema_id(schema_id: Any) -> None:
    if schema_id is not None and (
        type(schema_id) is not int or not 0 <= schema_id < 2**32
    ):
        raise CodecError(f"schema id must be a whole number from 0 to 2**32-1, got `{schema_id!r}`")


def _decode_problem(exc: Exception, truncated: bool = False) -> str:
    # fastavro reports running out of bytes as EOFError, or as IndexError
    # when a length or index prefix is cut; an exhausted stream tells them apart.
    if truncated or isinstance(exc, EOFError):
        return "the value is truncated"
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not valid utf-8"
    if isinstance(exc, IndexError):
        return "an enum symbol or union branch index is out of range"
    return f"the bytes are not a valid value ({exc})"


# -- the module-level registry ------------------------------------------------


def schema_names() -> tuple[str, ...]:
    """Short names of every schema in ``schemas/``."""
    return _SCHEMAS.names()


def schema_path(name: str) -> Path:
    """Path of the ``.avsc`` file of `name` (short or full name)."""
    return _SCHEMAS.path(name)


def parsed_schema(name: str) -> dict:
    """The fastavro-parsed schema of `name`, parsed once per process."""
    return _SCHEMAS.parsed(name)


def schema_json(name: str) -> str:
    """Self-contained JSON of `name`, for a schema registry or a container header."""
    return json.dumps(_SCHEMAS.standalone(name), ensure_ascii=False)


def codec(name: str, schema_id: int | None = None) -> AvroCodec:
    """The cached codec of `name` (``"Decision"`` or ``"forgeone.trust.Decision"``).

    With `schema_id`, values are in Confluent wire format with that id.
    """
    _check_schema_id(schema_id)  # before the cache: 1.0 and True hash like 1
    return _codec(_SCHEMAS.full_name(name), schema_id)


@lru_cache(maxsize=None)
def _codec(full_name: str, schema_id: int | None) -> AvroCodec:
    return AvroCodec(_SCHEMAS.parsed(full_name), schema_id)


# -- Avro container files (offline replay, fixtures) --------------------------


def write_container(
    path: Path | str, name: str, records: Iterable[Mapping[str, Any]], *, compression: str = "null"
) -> int:
    """Write `records` of schema `name` to an Avro container file; return how many.

    `compression` is a fastavro codec name (``null``, ``deflate``).
    """
    schema = _SCHEMAS.standalone(name)
    label = short_name(_SCHEMAS.full_name(name))
    count = 0
    current: Any = None

    def counted() -> Iterator[Mapping[str, Any]]:
        nonlocal count, current
        for current in records:
            yield current
            count += 1

    with open(path, "wb") as fo:
        try:
            fastavro.writer(fo, schema, counted(), codec=compression)
        except Exception as exc:
            problem = codec(name).problem(current) or str(exc)
            raise CodecError(f"cannot write `{label}` record {count} to `{path}`: {problem}") from exc
    return count


def iter_container(path: Path | str, name: str | None = None) -> Iterator[dict]:
    """Yield the records of an Avro container file.

    With `name`, the file must hold records of that schema; they are read
    through it (Avro schema resolution), so an older file with fewer fields
    still reads.  I/O errors (a missing file) propagate as OSError.
    """
    reader_schema = _SCHEMAS.parsed(name) if name is not None else None
    with open(path, "rb") as fo:
        try:
            reader = fastavro.reader(fo, reader_schema)
        except Exception as exc:
            raise CodecError(f"`{path}` is not a readable avro container file: {exc}") from exc
        if reader_schema is not None:
            found = reader.writer_schema.get("name") if isinstance(reader.writer_schema, dict) else None
            if found != reader_schema["name"]:
                raise CodecError(
                    f"`{path}` holds `{found}` records, expected `{reader_schema['name']}`"
                )
        records = iter(reader)
        index = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:
                raise CodecError(f"`{path}`: record {index} does not decode: {_decode_problem(exc)}") from exc
            yield record
            index += 1


@lru_cache(maxsize=None)
def _without(name: str, added: tuple[str, ...]) -> dict:
    raw = json.loads(schema_json(name))
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in added]
    return fastavro.parse_schema(raw)


def decode_evolved(name: str, value: bytes, added: tuple[str, ...]) -> dict:
    """A `name` value, also one written before the fields `added` existed (read
    through Avro schema resolution: those fields take their defaults).

    CodecError, from the current schema, if the value is neither shape."""
    try:
        return codec(name).decode(value)
    except CodecError as exc:
        fo = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(fo, _without(name, added), parsed_schema(name))
        except Exception:  # not the old shape either: the current schema's error says why
            raise exc from None
        if fo.tell() != len(value):
            raise exc from None
        return record
