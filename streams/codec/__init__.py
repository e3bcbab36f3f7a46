"""Avro codecs for the topic values of docs/behaviour.md §4 (see :mod:`streams.codec.avro`)."""

from streams.codec.avro import (
    MAGIC,
    NAMESPACE,
    SCHEMA_DIR,
    AvroCodec,
    SchemaSet,
    codec,
    iter_container,
    parsed_schema,
    schema_json,
    schema_names,
    schema_path,
    write_container,
)

__all__ = [
    "MAGIC",
    "NAMESPACE",
    "SCHEMA_DIR",
    "AvroCodec",
    "SchemaSet",
    "codec",
    "iter_container",
    "parsed_schema",
    "schema_json",
    "schema_names",
    "schema_path",
    "write_container",
]
