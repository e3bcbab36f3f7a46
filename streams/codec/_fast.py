"""Schema-compiled Avro encoders and decoders: the hot path of the codecs.

fastavro interprets the schema for every value it writes or reads (its
reader also calls ``file.read`` once per primitive), which made it the
largest cost of a worker.  Here each schema is compiled once into straight
Python source: one function that encodes a record, one that decodes bytes,
no schema lookups, named types inlined, enum symbols and small varints in
tables.  STYLE.md's "compile, then evaluate", applied to the wire.

The compiled functions only take the easy road.  They raise (anything) the
moment a value is not exactly what the schema expects -- an unexpected type,
a missing field without default, a union branch index other than the
canonical 0 or 1, a negative block count, truncated or trailing bytes -- and
:class:`~streams.codec.avro.AvroCodec` then runs fastavro on the same input.
So for every input the result, or the error, is fastavro's; the compiled
path only makes the common case fast.  Inside a union the encoder is as
strict as fastavro's own union validation (exact types, 32-bit ints), so it
never writes a branch fastavro would refuse.

Supported: null, boolean, int, long, float, double, bytes, string, enum,
record, array, map, and unions of ``null`` with one other type (every union
in ``schemas/``).  Anything else (logical types, fixed, wider unions) makes
:func:`compile_codec` return None and the codec stays on fastavro.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

_D = struct.Struct("<d")
_F = struct.Struct("<f")
_SMALL = 1 << 14  # varints of non-negative numbers below this come from a table

MIN_LONG, MAX_LONG = -(1 << 63), (1 << 63) - 1
MIN_INT, MAX_INT = -(1 << 31), (1 << 31) - 1
_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


class Unsupported(Exception):
    """The schema uses something the compiler does not handle."""


def _varint(n: int) -> bytes:
    """Varint of an already zig-zagged, non-negative number."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINTS = tuple(_varint(n) for n in range(_SMALL))


def _zz(v: int) -> bytes:
    """Zig-zag varint of a signed 64-bit value (range already checked)."""
    z = (v << 1) ^ (v >> 63)
    return _VARINTS[z] if z < _SMALL else _varint(z)


def _len(n: int) -> bytes:
    """Varint of a length (zig-zag of a non-negative number is 2n)."""
    z = n << 1
    return _VARINTS[z] if z < _SMALL else _varint(z)


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint of at most 10 bytes, as fastavro reads it (64-bit wrap)."""
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
    n &= 0xFFFFFFFFFFFFFFFF
    return (n >> 1) ^ -(n & 1), pos


def _read_size(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_long(buf, pos)
    if n < 0:
        raise ValueError("negative size")
    return n, pos


class _Bail(Exception):
    pass


def _bail(*_: Any) -> None:
    raise _Bail


BASE_NS = {"_D": _D.pack, "_Du": _D.unpack_from, "_F": _F.pack, "_Fu": _F.unpack_from, "_V": _VARINTS,
           "_zz": _zz, "_len": _len, "_rl": _read_long, "_rs": _read_size, "_bail": _bail,
           "MIN_LONG": MIN_LONG, "MAX_LONG": MAX_LONG, "MIN_INT": MIN_INT, "MAX_INT": MAX_INT,
           "_SMALL": _SMALL}


class _Gen:
    def __init__(self, named: dict[str, dict]):
        self.named = named
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0

    def var(self, stem: str = "v") -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def check_optional(self, union: list) -> None:
        """Only `[null, T]` unions are compiled; any other falls back to fastavro."""
        branches = [self.resolve(b) for b in union]
        if len(branches) != 2 or branches[0] != "null" or branches[1] == "null":
            raise Unsupported("union other than [null, T]")

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            try:
                return self.named[schema]
            except KeyError:
                raise Unsupported(f"unknown named type {schema}") from None
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            if "logicalType" in schema:
                raise Unsupported("logical type")
            return schema["type"]
        if isinstance(schema, dict) and "logicalType" in schema:
            raise Unsupported("logical type")
        return schema


# -- encoder ----------------------------------------------------------------------------


class _Enc(_Gen):
    def value(self, schema: Any, v: str, ind: int, strict: bool) -> None:
        """Emit code writing the value in variable `v` (via `w`)."""
        s = self.resolve(schema)
        e = self.emit
        if isinstance(s, list):
            self.check_optional(s)
            e(ind, f"if {v} is None:")
            e(ind + 1, "w(b'\\x00')")
            e(ind, "else:")
            e(ind + 1, "w(b'\\x02')")
            self.value(s[1], v, ind + 1, strict=True)
            return
        kind = s if isinstance(s, str) else s["type"]
        if kind == "null":
            e(ind, f"if {v} is not None: _bail()")
        elif kind == "string":
            b = self.var("b")
            if strict:
                e(ind, f"if type({v}) is not str: _bail()")
            e(ind, f"{b} = {v}.encode()")
            e(ind, f"w(_len(len({b})))")
            e(ind, f"w({b})")
        elif kind == "bytes":
            e(ind, f"if type({v}) is not bytes: _bail()")
            e(ind, f"w(_len(len({v})))")
            e(ind, f"w({v})")
        elif kind in ("int", "long"):
            lo, hi = ("MIN_INT", "MAX_INT") if strict and kind == "int" else ("MIN_LONG", "MAX_LONG")
            e(ind, f"if type({v}) is not int or not {lo} <= {v} <= {hi}: _bail()")
            e(ind, f"w(_zz({v}))")
        elif kind in ("double", "float"):
            pack = "_D" if kind == "double" else "_F"
            if strict:
                e(ind, f"if type({v}) is not float and type({v}) is not int: _bail()")
            e(ind, f"w({pack}({v}))")
        elif kind == "boolean":
            if strict:
                e(ind, f"if {v} is True: w(b'\\x01')")
                e(ind, f"elif {v} is False: w(b'\\x00')")
                e(ind, "else: _bail()")
            else:
                e(ind, f"w(b'\\x01' if {v} else b'\\x00')")
        elif kind == "enum":
            table = self.const({sym: _zz(i) for i, sym in enumerate(s["symbols"])})
            e(ind, f"w({table}[{v}])")
        elif kind in ("record", "error"):
            if strict:
                e(ind, f"if type({v}) is not dict or '-type' in {v}: _bail()")
            for field in s["fields"]:
                fv = self.var()
                if "default" in field:
                    e(ind, f"{fv} = {v}.get({field['name']!r}, {self.const(field['default'])})")
                elif isinstance(field["type"], list) and "null" in field["type"]:
                    e(ind, f"{fv} = {v}.get({field['name']!r})")
                else:
                    e(ind, f"{fv} = {v}[{field['name']!r}]")
                self.value(field["type"], fv, ind, strict)
        elif kind == "array":
            item = self.var("i")
            e(ind, f"if type({v}) is not list: _bail()")
            e(ind, f"if {v}:")
            e(ind + 1, f"w(_zz(len({v})))")
            e(ind + 1, f"for {item} in {v}:")
            self.value(s["items"], item, ind + 2, strict)
            e(ind, "w(b'\\x00')")
        elif kind == "map":
            k, val, kb = self.var("k"), self.var("m"), self.var("b")
            e(ind, f"if type({v}) is not dict: _bail()")
            e(ind, f"if {v}:")
            e(ind + 1, f"w(_zz(len({v})))")
            e(ind + 1, f"for {k}, {val} in {v}.items():")
            if strict:
                e(ind + 2, f"if type({k}) is not str: _bail()")
            e(ind + 2, f"{kb} = {k}.encode()")
            e(ind + 2, f"w(_len(len({kb})))")
            e(ind + 2, f"w({kb})")
            self.value(s["values"], val, ind + 2, strict)
            e(ind, "w(b'\\x00')")
        else:
            raise Unsupported(f"type {kind}")


# -- decoder ----------------------------------------------------------------------------


class _Dec(_Gen):
    def long(self, target: str, ind: int) -> None:
        e = self.emit
        b = self.var("b")
        e(ind, f"{b} = buf[pos]")
        e(ind, f"if {b} < 128:")
        e(ind + 1, "pos += 1")
        e(ind + 1, f"{target} = ({b} >> 1) ^ -({b} & 1)")
        e(ind, "else:")
        e(ind + 1, f"{target}, pos = _rl(buf, pos)")

    def size(self, target: str, ind: int) -> None:
        e = self.emit
        b = self.var("b")
        e(ind, f"{b} = buf[pos]")
        e(ind, f"if not {b} & 0x81:")  # one byte, even: a small non-negative number
        e(ind + 1, "pos += 1")
        e(ind + 1, f"{target} = {b} >> 1")
        e(ind, "else:")
        e(ind + 1, f"{target}, pos = _rs(buf, pos)")

    def value(self, schema: Any, target: str, ind: int) -> None:
        s = self.resolve(schema)
        e = self.emit
        if isinstance(s, list):
            self.check_optional(s)
            b = self.var("u")
            e(ind, f"{b} = buf[pos]")
            e(ind, "pos += 1")
            e(ind, f"if {b} == 0:")
            e(ind + 1, f"{target} = None")
            e(ind, f"elif {b} == 2:")
            self.value(s[1], target, ind + 1)
            e(ind, "else:")
            e(ind + 1, "_bail()")
            return
        kind = s if isinstance(s, str) else s["type"]
        if kind == "null":
            e(ind, f"{target} = None")
        elif kind in ("string", "bytes"):
            n, end = self.var("n"), self.var("e")
            self.size(n, ind)
            e(ind, f"{end} = pos + {n}")
            e(ind, f"{target} = buf[pos:{end}]" + (".decode()" if kind == "string" else ""))
            e(ind, f"pos = {end}")
        elif kind in ("int", "long"):
            self.long(target, ind)
        elif kind in ("double", "float"):
            fn, width = ("_Du", 8) if kind == "double" else ("_Fu", 4)
            e(ind, f"{target} = {fn}(buf, pos)[0]")
            e(ind, f"pos += {width}")
        elif kind == "boolean":
            e(ind, f"{target} = buf[pos] != 0")
            e(ind, "pos += 1")
        elif kind == "enum":
            i = self.var("x")
            table = self.const(dict(enumerate(s["symbols"])))
            self.long(i, ind)
            e(ind, f"{target} = {table}[{i}]")
        elif kind in ("record", "error"):
            names = []
            for field in s["fields"]:
                fv = self.var()
                self.value(field["type"], fv, ind)
                names.append(f"{field['name']!r}: {fv}")
            e(ind, f"{target} = {{{', '.join(names)}}}")
        elif kind in ("array", "map"):
            count, item, key = self.var("c"), self.var("i"), self.var("k")
            e(ind, f"{target} = {'[]' if kind == 'array' else '{}'}")
            self.long(count, ind)
            e(ind, f"while {count}:")
            e(ind + 1, f"if {count} < 0: _bail()")
            e(ind + 1, f"for _ in range({count}):")
            if kind == "map":
                self.value("string", key, ind + 2)
                self.value(s["values"], item, ind + 2)
                e(ind + 2, f"{target}[{key}] = {item}")
            else:
                self.value(s["items"], item, ind + 2)
                e(ind + 2, f"{target}.append({item})")
            self.long(count, ind + 1)
        else:
            raise Unsupported(f"type {kind}")


def compile_codec(schema: dict) -> tuple[Callable[[Any], bytes], Callable[[bytes, int], dict]] | None:
    """Compile a fastavro-parsed record schema into ``(encode, decode)``, or None.

    ``encode(record) -> bytes`` (plain Avro binary, no header);
    ``decode(buf, pos) -> record`` reads from offset `pos` to exactly the end
    of `buf` (a ``bytes``).  Both raise on anything unusual: see the module doc.
    """
    named = dict(schema.get("__named_schemas", {}))
    named.setdefault(schema["name"], schema)
    try:
        enc = _Enc(named)
        enc.emit(0, "def encode(rec):")
        enc.emit(1, "out = []")
        enc.emit(1, "w = out.append")
        enc.value(schema, "rec", 1, strict=False)
        enc.emit(1, "return b''.join(out)")
        dec = _Dec(named)
        dec.emit(0, "def decode(buf, pos):")
        dec.value(schema, "rec", 1)
        dec.emit(1, "if pos != len(buf): _bail()")
        dec.emit(1, "return rec")
    except Unsupported:
        return None
    ns: dict[str, Any] = dict(BASE_NS)
    ns.update(enc.consts)
    exec(compile("\n".join(enc.lines), f"<avro encoder {schema['name']}>", "exec"), ns)
    dns: dict[str, Any] = dict(BASE_NS)
    dns.update(dec.consts)
    exec(compile("\n".join(dec.lines), f"<avro decoder {schema['name']}>", "exec"), dns)
    return ns["encode"], dns["decode"]
