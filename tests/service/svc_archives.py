"""Hostile ZIP archives built in memory (issue 19 #2)."""

from __future__ import annotations

import struct
import zlib


def many_entry_zip(n: int, claimed: int | None = None, name: bytes = b"a") -> bytes:
    """A ZIP whose central directory lists `n` entries that all point at one empty stored file:
    ~47 bytes per entry (1,000,000 entries: 47 MB), with zip64 end records. `claimed` is the
    entry count the end records state (default `n`; less to lie about it)."""
    claimed = n if claimed is None else claimed
    crc = zlib.crc32(b"")
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0) + name
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0, 0, 0,
                         0, 0, 0) + name
    directory = record * n
    offset, size = len(local), len(directory)
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, claimed, claimed, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + size, 1)
    short = min(claimed, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, min(size, 0xFFFFFFFF),
                      min(offset, 0xFFFFFFFF), 0)
    return local + directory + zip64 + locator + end
