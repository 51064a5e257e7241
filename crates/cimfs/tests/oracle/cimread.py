#!/usr/bin/env python3
"""Independent CimFS (classic, file-based) image reader used as a test oracle.

Written from the format facts in shared/docs/cim-format.md (part A) and the facts of hcsshim's
2021 Go reader, without looking at the cimfs crate's code, so that the Rust writer is checked by
a reader that does not share its bugs. Standard library only.

Usage: cimread.py [--strict] [--kv] [--expect-upcase FILE] <dir>/<name>.cim

stdout: first a header record (kind "header": version, region sets, region file names in
combined index order), then one record per entry reachable from the root (kind "entry"; the root
has path "", other paths are backslash-separated from the root), depth-first with children in
stored order. Entry records hold the file id, attributes derived from the flags, size, the four
times, sha256 of the default stream (plain, sparse or PeImage), SD/EA/reparse as hex, the ADS
list, and the [region index, byte offset] of the file entry ("entry") and of its data, PE image
object or link table ("data"). Records are JSON objects, or with --kv tab-separated key=value
pairs (strings as hex of their UTF-8, lists joined by ",", ADS as name:size:sparse:sha256, None
as "-").

stderr: "warning: ..." for writer choices that are valid but unexpected (alignment of data,
region types, unreachable file entries, guessed meanings of ParentFileId/BaseRegionIndex);
--strict makes them errors. Any inconsistency stops the run with "error: ..." and exit status 1
(2 for bad usage). --expect-upcase also requires the stored upcase table to equal FILE.
"""

import hashlib
import json
import os
import struct
import sys

MAGIC = b"cimfile0"
COMMON_HEADER = 32
FS_HEADER = 72
REGION_SET = 24
REGION_HEADER = 40
OBJECTID_HEADER = 48
OBJECTID_ENTRY = 40
FILESYSTEM = 24
FTD_ENTRY = 16
FILES_PER_TABLE = 1024
FILE_V1 = 0x58
FILE_V2 = 0x60
UPCASE_UNITS = 0x10000
PAGE = 4096
STREAM = 16
PE_IMAGE = 24
PE_MAPPING = 8
MAX_NAME_UNITS = 255

ST_DATA, ST_LINKTABLE, ST_PEIMAGE = 0, 1, 2
SPARSE_BIT = 1 << 56

# FileFlags -> FILE_ATTRIBUTE_* (cim-format.md A6)
FLAG_ATTRS = ((0x01, 0x01), (0x02, 0x02), (0x04, 0x04), (0x08, 0x20), (0x10, 0x200))
KNOWN_FLAGS = 0x1F
ATTR_DIRECTORY = 0x10
ATTR_REPARSE = 0x400


class CimError(Exception):
    """An inconsistency in the image."""


def fail(msg):
    raise CimError(msg)


def u16(b, off):
    return struct.unpack_from("<H", b, off)[0]


def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def u64(b, off):
    return struct.unpack_from("<Q", b, off)[0]


def guid_str(b):
    d1, d2, d3 = struct.unpack_from("<IHH", b, 0)
    d4 = b[8:16]
    return "%08x-%04x-%04x-%s-%s" % (d1, d2, d3, d4[:2].hex(), d4[2:].hex())


def fmt_off(ro):
    return "0x%x (region %d, byte 0x%x)" % (ro, ro >> 48, ro & 0xFFFFFFFFFFFF)


class Region:
    """One region file, opened for reading."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size
        self.rtype = None

    def read(self, off, n):
        self.f.seek(off)
        b = self.f.read(n)
        if len(b) != n:
            fail("%s: short read of %d bytes at 0x%x" % (self.path, n, off))
        return b


class Reader:
    def __init__(self, cim_path, strict=False):
        self.cim_path = cim_path
        self.strict = strict
        self.warnings = []
        self.regions = []
        self.dir = os.path.dirname(os.path.abspath(cim_path))
        self.listing = {n.lower(): n for n in os.listdir(self.dir)}
        self.sd_cache = {}
        # (region index, byte offset) -> {(size, kind): what}; kind is "meta" or "data".
        self.extents = {}
        # file id -> its ParentFileId; file id -> ids of the directories that link to it.
        self.parent_field = {}
        self.linked_from = {}

    def warn(self, msg):
        if self.strict:
            fail(msg + " (--strict)")
        self.warnings.append(msg)
        print("warning: " + msg, file=sys.stderr)

    # ----- headers -------------------------------------------------------------------------

    def check_common(self, b, what, want_type):
        if len(b) < COMMON_HEADER:
            fail("%s: file shorter than the 32-byte common header" % what)
        if b[:8] != MAGIC:
            fail("%s: bad magic %r" % (what, b[:8]))
        major, minor = u32(b, 0x10), u32(b, 0x14)
        if major not in (2, 3):
            fail("%s: unsupported version %d.%d (readers accept major 2..3)" % (what, major, minor))
        if b[0x0C] != want_type:
            self.warn("%s: common header type %d, expected %d" % (what, b[0x0C], want_type))
        if b[0x0D] != 0 or u16(b, 0x0E) != 0 or u64(b, 0x18) != 0:
            self.warn("%s: reserved common header fields are not zero" % what)
        return major, minor, u32(b, 0x08)

    def find_file(self, name):
        real = self.listing.get(name.lower())
        if real is None:
            fail("%s: %s is missing" % (self.cim_path, name))
        if real != name:
            self.warn("%s found as %s (different case)" % (name, real))
        return os.path.join(self.dir, real)

    def load_region_set(self, guid, count, what):
        if count == 0:
            fail("%s region set %s has count 0" % (what, guid))
        for i in range(count):
            path = self.find_file("region_%s_%d" % (guid, i))
            r = Region(path)
            if r.size < REGION_HEADER:
                fail("%s: shorter than the 40-byte region header" % path)
            h = r.read(0, REGION_HEADER)
            self.check_common(h, path, 1)
            if u16(h, 0x20) != i:
                fail("%s: region header index %d, expected %d" % (path, u16(h, 0x20), i))
            r.rtype = h[0x22]
            if r.rtype > 2:
                fail("%s: region type %d is not 0 (metadata), 1 (data) or 2 (small data)" % (path, r.rtype))
            self.regions.append(r)
            self.check_objectid(guid, i, r)

    def check_objectid(self, guid, i, region):
        name = "objectid_%s_%d" % (guid, i)
        if name.lower() not in self.listing:
            self.warn("%s is missing (only needed to write forks)" % name)
            return
        path = self.find_file(name)
        with open(path, "rb") as f:
            b = f.read()
        if len(b) < OBJECTID_HEADER:
            fail("%s: shorter than the 48-byte objectid header" % path)
        self.check_common(b, path, 2)
        if u16(b, 0x20) != i:
            fail("%s: objectid header index %d, expected %d" % (path, u16(b, 0x20), i))
        if b[0x22] != region.rtype:
            fail("%s: objectid type %d differs from its region's type %d" % (path, b[0x22], region.rtype))
        table, count = u32(b, 0x28), u32(b, 0x2C)
        if count and table < OBJECTID_HEADER:
            fail("%s: entry table at 0x%x overlaps the header" % (path, table))
        if table + count * OBJECTID_ENTRY > len(b):
            fail("%s: %d entries at 0x%x run past the end (%d bytes)" % (path, count, table, len(b)))
        for k in range(count):
            e = table + k * OBJECTID_ENTRY
            length, off = u64(b, e), u64(b, e + 0x20)
            if off < REGION_HEADER or off + length > region.size:
                fail("%s: entry %d (length %d, offset 0x%x) outside %s (%d bytes)"
                     % (path, k, length, off, region.path, region.size))

    def open(self):
        with open(self.cim_path, "rb") as f:
            head = f.read()
        if len(head) < FS_HEADER:
            fail("%s: shorter than the 72-byte filesystem header" % self.cim_path)
        self.version = self.check_common(head, self.cim_path, 0)[:2]
        own_guid = guid_str(head[0x20:0x30])
        own_count = u16(head, 0x30)
        fs_off = u64(head, 0x38)
        parent_count = u16(head, 0x46)
        if len(head) < FS_HEADER + REGION_SET * parent_count:
            fail("%s: %d parent region sets do not fit in the file" % (self.cim_path, parent_count))
        if len(head) > FS_HEADER + REGION_SET * parent_count:
            self.warn("%s: %d bytes after the parent region sets"
                      % (self.cim_path, len(head) - FS_HEADER - REGION_SET * parent_count))
        parents = []
        for k in range(parent_count):
            o = FS_HEADER + k * REGION_SET
            parents.append((guid_str(head[o:o + 16]), u16(head, o + 16)))
        total = own_count + sum(c for _, c in parents)
        if total == 0 or total > 0x10000:
            fail("%s: invalid combined region count %d" % (self.cim_path, total))
        seen = set()
        for k, (g, c) in enumerate(parents):
            if g in seen:
                fail("%s: region set %s listed twice" % (self.cim_path, g))
            seen.add(g)
            self.load_region_set(g, c, "parent %d" % k)
        if own_guid in seen:
            fail("%s: own region set %s is also a parent" % (self.cim_path, own_guid))
        self.own_base = len(self.regions)
        self.load_region_set(own_guid, own_count, "own")
        self.parents = parents
        self.own_guid = own_guid

        fs = self.obj(fs_off, FILESYSTEM, "filesystem object")
        self.check_meta_alignment(fs_off, "filesystem object")
        upcase_off, ftd_off, ftd_len, self.root_id = struct.unpack_from("<QQII", fs, 0)
        upcase = self.obj(upcase_off, UPCASE_UNITS * 2, "upcase table")
        self.upcase = struct.unpack("<%dH" % UPCASE_UNITS, upcase)
        for c in range(ord("a"), ord("z") + 1):
            if self.upcase[c] != c - 32:
                fail("upcase table maps %r to U+%04X" % (chr(c), self.upcase[c]))
        if ftd_len == 0:
            fail("file table directory is empty")
        if ftd_len > 0x10000:
            fail("file table directory length %d is implausible" % ftd_len)
        ftd = self.obj(ftd_off, ftd_len * FTD_ENTRY, "file table directory")
        self.tables = []
        for t in range(ftd_len):
            off, count, esize, reserved = struct.unpack_from("<QHHI", ftd, t * FTD_ENTRY)
            if count > FILES_PER_TABLE:
                fail("file table %d: count %d > %d" % (t, count, FILES_PER_TABLE))
            if esize < FILE_V1:
                fail("file table %d: entry size 0x%x < 0x%x" % (t, esize, FILE_V1))
            if esize != FILE_V2:
                self.warn("file table %d: entry size 0x%x (v2 is 0x60)" % (t, esize))
            if reserved:
                self.warn("file table %d: reserved field 0x%x" % (t, reserved))
            if count and t + 1 < ftd_len and count != FILES_PER_TABLE:
                self.warn("file table %d is not full (%d entries) but is not the last" % (t, count))
            data = self.obj(off, count * esize, "file table %d" % t) if count else b""
            if count:
                self.check_meta_alignment(off, "file table %d" % t)
            self.tables.append((count, esize, data, off))
        self.file_count = sum(t[0] for t in self.tables)

    # ----- objects -------------------------------------------------------------------------

    def locate(self, ro, size, what):
        """Checks that `size` bytes at RegionOffset `ro` lie inside a region; returns it."""
        if ro == 0:
            fail("%s: offset 0 (null) for an object of %d bytes" % (what, size))
        idx, byte = ro >> 48, ro & 0xFFFFFFFFFFFF
        if idx >= len(self.regions):
            fail("%s: offset %s names region %d of %d" % (what, fmt_off(ro), idx, len(self.regions)))
        r = self.regions[idx]
        if byte < REGION_HEADER:
            fail("%s: offset %s points into the region header of %s" % (what, fmt_off(ro), r.path))
        if byte + size > r.size:
            fail("%s: %d bytes at %s run past the end of %s (%d bytes)"
                 % (what, size, fmt_off(ro), r.path, r.size))
        return r, byte

    def obj(self, ro, size, what, record=True):
        r, byte = self.locate(ro, size, what)
        if record and size:
            self.extent(ro, size, "meta", what)
        return r.read(byte, size)

    def extent(self, ro, size, kind, what):
        """Remembers an object's bytes so overlaps between different objects can be found."""
        idx = ro >> 48
        self.extents.setdefault((idx, ro & 0xFFFFFFFFFFFF), {}).setdefault((size, kind), what)
        if kind == "meta" and self.regions[idx].rtype != 0:
            self.warn("%s: metadata in region %d of type %d" % (what, idx, self.regions[idx].rtype))

    def check_overlaps(self):
        """Distinct objects must not share bytes; the same object may be referenced many times
        (de-duplicated data, shared security descriptors)."""
        per_region = {}
        for (idx, start), objs in self.extents.items():
            for (size, kind), what in objs.items():
                per_region.setdefault(idx, []).append((start, start + size, kind, what))
        for idx, ext in sorted(per_region.items()):
            ext.sort()
            cur = None
            for e in ext:
                if cur is not None and e[0] < cur[1]:
                    a, b = cur, e
                    msg = "region %d: %s [0x%x, 0x%x) overlaps %s [0x%x, 0x%x)" % (
                        idx, a[3], a[0], a[1], b[3], b[0], b[1])
                    if a[2] == "meta" or b[2] == "meta":
                        fail(msg)
                    self.warn(msg + " (partly shared file data)")
                if cur is None or e[1] > cur[1]:
                    cur = e

    def check_meta_alignment(self, ro, what):
        if ro & 7:
            self.warn("%s at %s is not 8-byte aligned" % (what, fmt_off(ro)))

    def counted16(self, ro, what):
        self.check_meta_alignment(ro, what)
        n = u16(self.obj(ro, 2, what + " count", record=False), 0)
        self.extent(ro, 2 + n, "meta", what)
        return self.obj(ro + 2, n, what, record=False) if n else b""

    def file_entry(self, fid, where):
        if fid == 0:
            fail("%s: file id 0" % where)
        t, slot = (fid - 1) // FILES_PER_TABLE, (fid - 1) % FILES_PER_TABLE
        if t >= len(self.tables) or slot >= self.tables[t][0]:
            fail("%s: file id %d is not in the file tables" % (where, fid))
        _, esize, data, table_off = self.tables[t]
        entry_off = table_off + slot * esize
        raw = data[slot * esize:(slot + 1) * esize]
        raw = raw[:FILE_V2] + bytes(max(0, FILE_V2 - len(raw)))
        (flags, ea_len, tag, ctime, wtime, chtime, atime, ds_off, ds_lt, sd_off, ea_off,
         rp_off, st_off, parent, base, reserved) = struct.unpack("<HHIQQQQQQQQQQIHH", raw)
        return {
            "flags": flags, "ea_len": ea_len, "tag": tag, "times": (ctime, wtime, chtime, atime),
            "ds_off": ds_off, "ds_lt": ds_lt, "sd_off": sd_off, "ea_off": ea_off,
            "rp_off": rp_off, "st_off": st_off, "parent": parent, "base": base,
            "reserved": reserved, "entry": [entry_off >> 48, entry_off & 0xFFFFFFFFFFFF],
        }

    # ----- link tables ---------------------------------------------------------------------

    def upkey(self, units):
        up = self.upcase
        return tuple(up[u] for u in units)

    def go_key(self, units):
        """Sort key of hcsshim e86001a65's Go reader (cmpcaseUtf8Utf16LE): BMP units upcased,
        surrogate pairs compared as whole code points without upcasing."""
        out, i = [], 0
        while i < len(units):
            u = units[i]
            if 0xD800 <= u < 0xDC00 and i + 1 < len(units) and 0xDC00 <= units[i + 1] < 0xE000:
                out.append(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00))
                i += 2
            else:
                out.append(self.upcase[u])
                i += 1
        return tuple(out)

    def link_table(self, ro, span, esize, what):
        """Parses a link table; returns [(name, units, entry_bytes)] in stored order."""
        if ro & 7:
            fail("%s: link table at %s is not 8-byte aligned" % (what, fmt_off(ro)))
        b = self.obj(ro, span, what)
        if span < 8:
            fail("%s: link table of %d bytes is shorter than its header" % (what, span))
        length, count = u32(b, 0), u32(b, 4)
        if length != span:
            fail("%s: link table length field %d != %d bytes of table" % (what, length, span))
        names_start = 8 + count * (esize + 4)
        if names_start > length:
            fail("%s: %d entries do not fit in a %d-byte table" % (what, count, length))
        out = []
        spans = []
        for i in range(count):
            entry = b[8 + i * esize:8 + (i + 1) * esize]
            no = u32(b, 8 + count * esize + i * 4)
            if no < names_start or no + 2 > length:
                fail("%s: name %d at offset %d outside the name area [%d, %d)"
                     % (what, i, no, names_start, length))
            nl = u16(b, no)
            if no + 2 + nl * 2 > length:
                fail("%s: name %d (%d units at %d) runs past the table end %d" % (what, i, nl, no, length))
            spans.append((no, no + 2 + nl * 2, i))
            raw = b[no + 2:no + 2 + nl * 2]
            units = struct.unpack("<%dH" % nl, raw)
            try:
                name = raw.decode("utf-16-le", errors="strict")
            except UnicodeDecodeError as e:
                fail("%s: name %d is not valid UTF-16 (%s): %s" % (what, i, e, raw.hex()))
            if nl == 0:
                fail("%s: entry %d has an empty name" % (what, i))
            if nl > MAX_NAME_UNITS:
                fail("%s: name %r is %d units long (max %d)" % (what, name, nl, MAX_NAME_UNITS))
            if any(c in name for c in "\\/:\0") or name in (".", ".."):
                fail("%s: invalid name %r" % (what, name))
            out.append((name, units, entry))
        spans.sort()
        for (s0, e0, i0), (s1, e1, i1) in zip(spans, spans[1:]):
            if s1 < e0:
                fail("%s: names %d and %d overlap" % (what, i0, i1))
        for (n0, u0, _), (n1, u1, _) in zip(out, out[1:]):
            k0, k1 = self.upkey(u0), self.upkey(u1)
            if k0 == k1:
                fail("%s: names %r and %r are equal ignoring case" % (what, n0, n1))
            if k0 > k1:
                fail("%s: link table not sorted: %r stored before %r" % (what, n0, n1))
        go = [self.go_key(u) for _, u, _ in out]
        for (n0, _, _), (n1, _, _), g0, g1 in zip(out, out[1:], go, go[1:]):
            if g0 > g1:
                self.warn("%s: %r sorts before %r by UTF-16 units but after it by code points, "
                          "as hcsshim's Go reader compares (it may not find them)" % (what, n0, n1))
                break
        return out

    # ----- streams -------------------------------------------------------------------------

    def data_alignment(self, r, byte, size, what):
        if size >= PAGE and byte % PAGE:
            self.warn("%s: %d bytes of data at 0x%x in %s not page aligned" % (what, size, byte, r.path))
        elif byte % 8:
            self.warn("%s: data at 0x%x in %s not 8-byte aligned" % (what, byte, r.path))
        if r.rtype == 0:
            self.warn("%s: file data stored in metadata region %s" % (what, r.path))

    def hash_range(self, h, ro, off, n, what):
        r, byte = self.locate(ro, 0, what)
        if byte + off + n > r.size:
            fail("%s: read of %d bytes at +%d from %s runs past the end of %s (%d bytes)"
                 % (what, n, off, fmt_off(ro), r.path, r.size))
        pos = byte + off
        while n:
            k = min(n, 1 << 20)
            h.update(r.read(pos, k))
            pos += k
            n -= k

    def stream_digest(self, ro, lt, what, allow_pe):
        """Returns (size, stype, sparse, sha256 hex, data location) of a data or PE stream."""
        size, stype, sparse = lt & 0xFFFFFFFFFFFF, (lt >> 48) & 0xFF, bool(lt & SPARSE_BIT)
        if lt >> 57:
            fail("%s: unknown bits 0x%x set in stream length/type" % (what, lt >> 57))
        h = hashlib.sha256()
        loc = None
        if sparse:
            if ro:
                self.warn("%s: sparse stream with a data offset %s" % (what, fmt_off(ro)))
            left = size
            zero = bytes(1 << 20)
            while left:
                k = min(left, len(zero))
                h.update(zero[:k])
                left -= k
        elif size == 0:
            if ro:
                self.warn("%s: empty stream with a data offset %s" % (what, fmt_off(ro)))
        elif stype == ST_DATA:
            r, byte = self.locate(ro, size, what)
            self.extent(ro, size, "data", what)
            self.data_alignment(r, byte, size, what)
            self.hash_range(h, ro, 0, size, what)
            loc = [ro >> 48, byte]
        elif stype == ST_PEIMAGE and allow_pe:
            loc = self.pe_digest(h, ro, size, what)
        else:
            fail("%s: stream type %d is not a data stream" % (what, stype))
        return size, stype, sparse, h.hexdigest(), loc

    def pe_digest(self, h, ro, size, what):
        self.check_meta_alignment(ro, what + " PE image object")
        pe = self.obj(ro, PE_IMAGE, what + " PE image object", record=False)
        data_off, data_len, image_len, mcount, pflags = struct.unpack("<QQIHH", pe)
        data_len &= 0x7FFFFFFFFFFFFFFF
        raw = self.obj(ro + PE_IMAGE, mcount * PE_MAPPING, what + " PE mappings", record=False)
        self.extent(ro, PE_IMAGE + mcount * PE_MAPPING, "meta", what + " PE image object")
        maps = [struct.unpack_from("<II", raw, k * PE_MAPPING) for k in range(mcount)]
        for (a, _), (b, _) in zip(maps, maps[1:]):
            if b <= a:
                fail("%s: PE mappings not in increasing file offset order (%d then %d)" % (what, a, b))
        if data_len < size:
            fail("%s: PE data length %d < stream size %d" % (what, data_len, size))
        if maps and maps[0][0] != 0:
            self.warn("%s: first PE mapping starts at file offset %d" % (what, maps[0][0]))
        r, byte = self.locate(data_off, 0, what + " PE data")
        if byte % PAGE:
            self.warn("%s: expanded PE data at 0x%x not page aligned" % (what, byte))
        off = 0
        expanded_end = 0
        while off < size:
            delta, end = 0, data_len
            for fo, d in maps:
                if fo > off:
                    end = fo
                    break
                delta = d
            n = min(end, size) - off
            if n <= 0:
                fail("%s: PE mapping table gives no data for file offset %d" % (what, off))
            self.hash_range(h, data_off, off + delta, n, what + " PE data")
            expanded_end = max(expanded_end, off + delta + n)
            off += n
        if expanded_end:
            self.extent(data_off, expanded_end, "data", what + " PE data")
        return [data_off >> 48, data_off & 0xFFFFFFFFFFFF]

    def streams(self, ino, what):
        if ino["st_off"] == 0:
            return []
        ro = ino["st_off"]
        length = u32(self.obj(ro, 4, what + " stream table", record=False), 0)
        table = self.link_table(ro, length, STREAM, what + " stream table")
        if not table:
            self.warn("%s: empty stream table stored" % what)
        out = []
        for name, _, entry in table:
            sro, slt = struct.unpack("<QQ", entry)
            if (slt >> 48) & 0xFF != ST_DATA:
                fail("%s:%s: stream type %d (only data streams are valid here)"
                     % (what, name, (slt >> 48) & 0xFF))
            size, _, sparse, digest, _ = self.stream_digest(sro, slt, "%s:%s" % (what, name), False)
            out.append({"name": name, "size": size, "sparse": sparse, "sha256": digest})
        return out

    # ----- walk ----------------------------------------------------------------------------

    def describe(self, path, fid):
        ino = self.file_entry(fid, path or "\\")
        what = "\\" + path
        flags = ino["flags"]
        if flags & ~KNOWN_FLAGS:
            fail("%s: unknown file flags 0x%x" % (what, flags))
        if ino["reserved"]:
            self.warn("%s: reserved field of the file entry is 0x%x" % (what, ino["reserved"]))
        stype = (ino["ds_lt"] >> 48) & 0xFF
        if stype not in (ST_DATA, ST_LINKTABLE, ST_PEIMAGE):
            fail("%s: unknown default stream type %d" % (what, stype))
        is_dir = stype == ST_LINKTABLE
        attrs = 0
        for bit, attr in FLAG_ATTRS:
            if flags & bit:
                attrs |= attr
        if is_dir:
            attrs |= ATTR_DIRECTORY
        if ino["rp_off"]:
            attrs |= ATTR_REPARSE

        if ino["sd_off"] == 0:
            self.warn("%s: no security descriptor stored" % what)
            sd = b""
        else:
            sd = self.sd_cache.get(ino["sd_off"])
            if sd is None:
                sd = self.counted16(ino["sd_off"], what + " security descriptor")
                self.sd_cache[ino["sd_off"]] = sd
            self.check_sd(sd, what)
        if ino["ea_len"]:
            ea = self.obj(ino["ea_off"], ino["ea_len"], what + " EA buffer")
            self.check_meta_alignment(ino["ea_off"], what + " EA buffer")
            self.check_ea(ea, what)
        else:
            if ino["ea_off"]:
                self.warn("%s: EA offset %s with EA length 0" % (what, fmt_off(ino["ea_off"])))
            ea = b""
        if ino["rp_off"]:
            reparse = self.counted16(ino["rp_off"], what + " reparse buffer")
            if len(reparse) < 8:
                fail("%s: reparse buffer of %d bytes is shorter than its header" % (what, len(reparse)))
            if u32(reparse, 0) != ino["tag"]:
                fail("%s: reparse tag in entry 0x%08x != tag in buffer 0x%08x"
                     % (what, ino["tag"], u32(reparse, 0)))
            if u16(reparse, 4) + 8 != len(reparse):
                self.warn("%s: reparse data length %d + 8 != buffer size %d"
                          % (what, u16(reparse, 4), len(reparse)))
        else:
            if ino["tag"]:
                fail("%s: reparse tag 0x%08x without a reparse buffer" % (what, ino["tag"]))
            reparse = b""

        rec = {
            "path": path,
            "file_id": fid,
            "directory": is_dir,
            "attributes": attrs,
            "flags": flags,
            "creation_time": ino["times"][0],
            "last_write_time": ino["times"][1],
            "change_time": ino["times"][2],
            "last_access_time": ino["times"][3],
            "sd": sd.hex(),
            "ea": ea.hex(),
            "reparse": reparse.hex(),
            "reparse_tag": ino["tag"],
            "parent_file_id": ino["parent"],
            "base_region_index": ino["base"],
            "entry": ino["entry"],
            "kind": "entry",
        }
        self.parent_field[fid] = ino["parent"]
        if ino["base"] != self.own_base:
            self.warn("%s: BaseRegionIndex %d, the image's own regions start at %d"
                      % (what, ino["base"], self.own_base))
        children = None
        if is_dir:
            size = ino["ds_lt"] & 0xFFFFFFFFFFFF
            if ino["ds_lt"] >> 56:
                fail("%s: directory stream has sparse/unknown bits 0x%x" % (what, ino["ds_lt"] >> 56))
            if size == 0:
                children = []
                if ino["ds_off"]:
                    self.warn("%s: empty directory with a table offset %s" % (what, fmt_off(ino["ds_off"])))
            else:
                children = self.link_table(ino["ds_off"], size, 4, what + " directory")
            loc = [ino["ds_off"] >> 48, ino["ds_off"] & 0xFFFFFFFFFFFF] if size else None
            rec.update(size=size, stream_type="linktable", sparse=False, sha256=None, data=loc,
                       children=len(children))
        else:
            size, st, sparse, digest, loc = self.stream_digest(ino["ds_off"], ino["ds_lt"], what, True)
            rec.update(size=size, stream_type="pe" if st == ST_PEIMAGE else "data", sparse=sparse,
                       sha256=digest, data=loc)
        rec["ads"] = self.streams(ino, what)
        return rec, children

    def check_sd(self, sd, what):
        """Self-relative SECURITY_DESCRIPTOR: revision 1, SE_SELF_RELATIVE, and owner, group,
        SACL and DACL (when present) inside the blob."""
        if len(sd) < 20 or sd[0] != 1 or not u16(sd, 2) & 0x8000:
            fail("%s: security descriptor is not a self-relative SD: %s" % (what, sd[:64].hex()))
        owner, group, sacl, dacl = struct.unpack_from("<IIII", sd, 4)
        for name, off in (("owner", owner), ("group", group)):
            if off and (off + 8 > len(sd) or off + 8 + 4 * sd[off + 1] > len(sd)):
                fail("%s: security descriptor %s SID at %d is outside its %d bytes"
                     % (what, name, off, len(sd)))
        for name, off in (("SACL", sacl), ("DACL", dacl)):
            if off and (off + 8 > len(sd) or off + u16(sd, off + 2) > len(sd)):
                fail("%s: security descriptor %s at %d is outside its %d bytes" % (what, name, off, len(sd)))

    def check_ea(self, ea, what):
        pos = 0
        while True:
            if pos + 8 > len(ea):
                fail("%s: EA entry at %d runs past the %d-byte buffer" % (what, pos, len(ea)))
            nxt, nlen, vlen = u32(ea, pos), ea[pos + 5], u16(ea, pos + 6)
            end = pos + 8 + nlen + 1 + vlen
            if end > len(ea) or ea[pos + 8 + nlen] != 0:
                fail("%s: EA entry at %d is malformed" % (what, pos))
            if nxt == 0:
                return
            if nxt < end - pos or nxt % 4:
                fail("%s: EA entry at %d has next offset %d" % (what, pos, nxt))
            pos += nxt

    def walk(self, emit):
        """Depth-first from the root, children in stored order (explicit stack, no recursion)."""
        root, children = self.describe("", self.root_id)
        if not root["directory"]:
            fail("root file id %d is not a directory" % self.root_id)
        emit(root)
        dirs_seen = {self.root_id}
        stack = [("", self.root_id, iter(children))]
        while stack:
            prefix, dir_id, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                continue
            name, _, entry = nxt
            fid = u32(entry, 0)
            path = prefix + "\\" + name if prefix else name
            rec, kids = self.describe(path, fid)
            if rec["directory"]:
                if fid in dirs_seen:
                    fail("\\%s: directory file id %d is linked more than once" % (path, fid))
                dirs_seen.add(fid)
            self.linked_from.setdefault(fid, set()).add(dir_id)
            emit(rec)
            if rec["directory"]:
                stack.append((path, fid, iter(kids)))
        self.check_after_walk()

    def check_after_walk(self):
        reached = len(self.linked_from) + (self.root_id not in self.linked_from)
        if reached != self.file_count:
            self.warn("%d of %d file table entries are not reachable from the root"
                      % (self.file_count - reached, self.file_count))
        # ParentFileId / BaseRegionIndex meanings are guesses (cim-format.md A6): the containing
        # directory (the root names itself) and the first region index of the writing image.
        for fid, parent in sorted(self.parent_field.items()):
            ok = parent in self.linked_from.get(fid, ()) or (fid == self.root_id and parent in (0, fid))
            if not ok:
                self.warn("file %d: ParentFileId %d is not a directory that links to it (%s)"
                          % (fid, parent, sorted(self.linked_from.get(fid, ()))))
        self.check_overlaps()

    def header_record(self):
        return {
            "kind": "header",
            "version": "%d.%d" % self.version,
            "own_region_set": self.own_guid,
            "parents": ["%s/%d" % p for p in self.parents],
            "regions": [os.path.basename(r.path) for r in self.regions],
            "region_types": [r.rtype for r in self.regions],
            "own_base": self.own_base,
            "file_count": self.file_count,
            "root_file_id": self.root_id,
        }

    def check_ancestors(self):
        """Every ancestor .cim found next to this one must list the same older ancestors before
        itself, with the same region counts: then the ancestor's combined region list is a
        prefix of this one's and offsets copied from it stay valid (cim-format.md A4)."""
        own_sets = {g: k for k, (g, _) in enumerate(self.parents)}
        me = os.path.basename(self.cim_path).lower()
        for low, real in sorted(self.listing.items()):
            if not low.endswith(".cim") or low == me:
                continue
            path = os.path.join(self.dir, real)
            with open(path, "rb") as f:
                head = f.read(FS_HEADER + REGION_SET * 0x10000)
            if len(head) < FS_HEADER or head[:8] != MAGIC:
                continue
            guid, count = guid_str(head[0x20:0x30]), u16(head, 0x30)
            k = own_sets.get(guid)
            if k is None:
                continue
            if count != self.parents[k][1]:
                fail("%s: parent %s has %d regions but this image counts %d"
                     % (self.cim_path, real, count, self.parents[k][1]))
            theirs = []
            for j in range(u16(head, 0x46)):
                o = FS_HEADER + j * REGION_SET
                theirs.append((guid_str(head[o:o + 16]), u16(head, o + 16)))
            if theirs != self.parents[:k]:
                self.warn("%s lists parents %s, but this image lists %s before it"
                          % (real, theirs, self.parents[:k]))


def kv_value(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v.encode("utf-8").hex()
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return ",".join(str(x) for x in v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return ",".join(x.encode("utf-8").hex() for x in v)
    if isinstance(v, list):
        return ",".join("%s:%d:%d:%s" % (s["name"].encode("utf-8").hex(), s["size"], s["sparse"], s["sha256"])
                        for s in v)
    raise TypeError(v)


KV_RAW = ("sd", "ea", "reparse", "sha256", "stream_type")


def kv_line(rec):
    return "\t".join("%s=%s" % (k, rec[k] if k in KV_RAW and rec[k] is not None else kv_value(rec[k]))
                     for k in sorted(rec)) + "\n"


def main(argv):
    args = argv[1:]
    strict = False
    kv = False
    expect_upcase = None
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--strict":
            strict = True
        elif opt == "--kv":
            kv = True
        elif opt == "--expect-upcase" and args:
            expect_upcase = args.pop(0)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    rd = Reader(args[0], strict)
    out = sys.stdout
    try:
        rd.open()
        if expect_upcase is not None:
            with open(expect_upcase, "rb") as f:
                want = struct.unpack("<%dH" % UPCASE_UNITS, f.read())
            diff = [i for i in range(UPCASE_UNITS) if want[i] != rd.upcase[i]]
            if diff:
                fail("upcase table differs from %s at %d units, first U+%04X: U+%04X != U+%04X"
                     % (expect_upcase, len(diff), diff[0], rd.upcase[diff[0]], want[diff[0]]))
        rd.check_ancestors()
        emit = (lambda rec: out.write(kv_line(rec))) if kv else (
            lambda rec: out.write(json.dumps(rec, ensure_ascii=True, sort_keys=True) + "\n"))
        emit(rd.header_record())
        rd.walk(emit)
    except CimError as e:
        out.flush()
        print("error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        out.flush()
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
