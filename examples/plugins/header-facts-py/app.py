"""header-facts: a mediaflow metadata extractor in Python (componentize-py).

It reads the source lazily through the host's `source` resource — a few bytes at a time for
the header, then the first `hash_kb` KiB in chunks for a content hash — and reports what the
file's own header says (format, pixel size, JPEG/PNG details), whether that agrees with the
engine's probe, the byte size and a SHA-256 of the head of the file.

Built against mediaflow:plugin@0.1.1: it checks `host.time_left_ms()` (new in 0.1.1) between
chunks and stops hashing early rather than be interrupted at its wall-time limit.
"""

import hashlib
import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.host import LogLevel
from wit_world.imports.input import ReadError_OutOfRange, Source
from wit_world.imports.types import (
    MediaInfo,
    MetadataEntry,
    MetadataValue_Boolean,
    MetadataValue_Integer,
    MetadataValue_Text,
    PluginError_BadConfig,
    PluginError_Failed,
    PluginError_InvalidInput,
)

CHUNK = 16 * 1024
# Stop hashing when less than this is left of the call's time budget.
RESERVE_MS = 100


def read(src: Source, offset: int, n: int) -> bytes:
    """Up to `n` bytes at `offset`; empty at or past the end."""
    try:
        return src.read(offset, n)
    except Err as e:
        if isinstance(e.value, ReadError_OutOfRange):
            return b""
        raise Err(PluginError_Failed(f"reading the source: {e.value}"))


class Head:
    """Random access to the start of the source, fetched from the host in chunks on demand."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.size = src.size()
        self.buf = b""

    def get(self, offset: int, n: int) -> bytes:
        """`n` bytes at `offset`, or fewer at the end of the source."""
        end = min(offset + n, self.size)
        while len(self.buf) < end:
            more = read(self.src, len(self.buf), CHUNK)
            if not more:
                break
            self.buf += more
        return self.buf[offset:end]

    def exact(self, offset: int, n: int, what: str) -> bytes:
        b = self.get(offset, n)
        if len(b) < n:
            raise Err(PluginError_InvalidInput(f"truncated {what} at byte {offset}"))
        return b


def sniff(h: Head) -> str:
    m = h.get(0, 12)
    if m.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if m.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if m[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if m[:4] == b"RIFF" and m[8:12] == b"WEBP":
        return "webp"
    if m[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if m[4:8] == b"ftyp":
        return "qt" if m[8:12] == b"qt  " else "mp4"
    return "unknown"


# SOFn markers: baseline, extended, progressive, lossless (not DHT/JPG/DAC).
SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
PNG_COLOR = {0: "gray", 2: "rgb", 3: "palette", 4: "gray-alpha", 6: "rgba"}


def jpeg_facts(h: Head) -> dict:
    """Walk the marker segments (reading only their 4-byte headers) to the first SOFn."""
    pos = 2
    segments = 0
    while True:
        marker = h.exact(pos, 2, "JPEG marker")
        if marker[0] != 0xFF:
            raise Err(PluginError_InvalidInput(f"no JPEG marker at byte {pos}"))
        code = marker[1]
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # no length
            pos += 2
            continue
        if code in (0xD9, 0xDA):
            raise Err(PluginError_InvalidInput("JPEG has no frame header before its scan"))
        (length,) = struct.unpack(">H", h.exact(pos + 2, 2, "JPEG segment length"))
        segments += 1
        if code in SOF:
            bits, height, width, comps = struct.unpack(">BHHB", h.exact(pos + 4, 6, "SOF"))
            return {
                "width": width,
                "height": height,
                "jpeg.progressive": code in (0xC2, 0xC6, 0xCA, 0xCE),
                "jpeg.bits_per_sample": bits,
                "jpeg.components": comps,
                "jpeg.segments_before_frame": segments - 1,
            }
        pos += 2 + length


def png_facts(h: Head) -> dict:
    ihdr = h.exact(8, 25, "PNG IHDR")
    if ihdr[4:8] != b"IHDR":
        raise Err(PluginError_InvalidInput("PNG does not start with IHDR"))
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[8:21])
    return {
        "width": width,
        "height": height,
        "png.bit_depth": depth,
        "png.color_type": PNG_COLOR.get(color, f"unknown-{color}"),
        "png.interlaced": interlace == 1,
    }


def gif_facts(h: Head) -> dict:
    width, height = struct.unpack("<HH", h.exact(6, 4, "GIF screen descriptor"))
    return {"width": width, "height": height}


def webp_facts(h: Head) -> dict:
    kind = h.exact(12, 4, "WebP chunk")
    if kind == b"VP8X":
        d = h.exact(24, 6, "VP8X canvas")
        return {
            "width": 1 + int.from_bytes(d[0:3], "little"),
            "height": 1 + int.from_bytes(d[3:6], "little"),
        }
    if kind == b"VP8L":
        b = h.exact(21, 4, "VP8L header")
        v = int.from_bytes(b, "little")
        return {"width": (v & 0x3FFF) + 1, "height": ((v >> 14) & 0x3FFF) + 1}
    if kind == b"VP8 ":
        w, hh = struct.unpack("<HH", h.exact(26, 4, "VP8 frame header"))
        return {"width": w & 0x3FFF, "height": hh & 0x3FFF}
    raise Err(PluginError_InvalidInput(f"unknown WebP chunk {kind!r}"))


FACTS = {"jpeg": jpeg_facts, "png": png_facts, "gif": gif_facts, "webp": webp_facts}


def config_int(key: str, default: int, lo: int, hi: int) -> int:
    raw = host.config(key)
    if raw is None:
        return default
    try:
        value = int(raw.strip().strip('"'))
    except ValueError:
        raise Err(PluginError_BadConfig(f"config key `{key}` = {raw!r} is not an integer"))
    if not lo <= value <= hi:
        raise Err(PluginError_BadConfig(f"config key `{key}` = {value} is outside {lo}..={hi}"))
    return value


def value(v):
    # bool before int: a Python bool is an int.
    if isinstance(v, bool):
        return MetadataValue_Boolean(v)
    if isinstance(v, int):
        return MetadataValue_Integer(v)
    return MetadataValue_Text(str(v))


class Extractor(exports.Extractor):
    def extract(self, info: MediaInfo, src: Source) -> list[MetadataEntry]:
        hash_kb = config_int("hash_kb", 64, 1, 16 * 1024)
        h = Head(src)
        facts = {"file.bytes": h.size, "header.format": sniff(h)}

        parse = FACTS.get(facts["header.format"])
        if parse is not None:
            dims = parse(h)
            w, hh = dims.pop("width"), dims.pop("height")
            facts["header.width"] = w
            facts["header.height"] = hh
            # The probe reports display size: EXIF orientations 5-8 swap the sides.
            display = (hh, w) if info.orientation in (5, 6, 7, 8) else (w, hh)
            facts["header.matches_probe"] = display == (info.width, info.height)
            facts.update(dims)

        # Hash the head of the file in chunks, watching the call's time budget.
        want = min(hash_kb * 1024, h.size)
        digest = hashlib.sha256()
        done = 0
        while done < want:
            if host.time_left_ms() < RESERVE_MS:
                host.log(LogLevel.WARN, f"time budget nearly spent; hashed {done} of {want} bytes")
                break
            n = min(CHUNK, want - done)
            # What the header parse already fetched is not read twice.
            chunk = h.buf[done : done + n] if done < len(h.buf) else read(src, done, n)
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
        facts["file.sha256_head"] = digest.hexdigest()
        facts["file.sha256_head_bytes"] = done
        facts["file.sha256_head_complete"] = done == want

        host.log(LogLevel.DEBUG, f"{info.uri}: {facts['header.format']}, {h.size} bytes")
        return [MetadataEntry(k, value(v)) for k, v in facts.items()]
