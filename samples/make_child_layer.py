#!/usr/bin/env python3
"""Writes samples/child-layer.tar.gz: a small child layer for samples/base-layer.tar.gz.

In go-winio's backuptar dialect (PAX records MSWINDOWS.fileattr, MSWINDOWS.rawsd,
LIBARCHIVE.creationtime and PAX times), it adds a folder with a file, a text file with an
alternate data stream, a symlink, replaces a file of the base layer and removes a folder of it
with an OCI whiteout. Deterministic: the same bytes on every run (fixed times, no owner names,
gzip without a name or time stamp).

    python3 samples/make_child_layer.py samples/child-layer.tar.gz
"""

import gzip
import io
import sys
import tarfile

# Self-relative security descriptor O:BAG:BAD:(A;OICI;FA;;;BA)(A;OICI;FA;;;SY).
SD = "AQAEgBQAAAAkAAAAAAAAADQAAAABAgAAAAAABSAAAAAgAgAAAQIAAAAAAAUgAAAAIAIAAAIANAACAAAAAAMYAP8BHwABAgAAAAAABSAAAAAgAgAAAAMUAP8BHwABAQAAAAAABRIAAAA="
WHEN = "1700000000.1234567"  # 2023-11-14 22:13:20 UTC
DIRECTORY, ARCHIVE, REPARSE_POINT = 0x10, 0x20, 0x400


def winio_records(attributes):
    return {
        "MSWINDOWS.fileattr": str(attributes),
        "MSWINDOWS.rawsd": SD,
        "LIBARCHIVE.creationtime": WHEN,
        "mtime": WHEN,
        "atime": WHEN,
        "ctime": WHEN,
    }


def entry(tar, name, data=None, kind=tarfile.REGTYPE, attributes=ARCHIVE, link="", pax=True):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = int(float(WHEN))
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.linkname = link
    if pax:
        info.pax_headers = winio_records(attributes)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def main(out):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry(tar, "Files", kind=tarfile.DIRTYPE, attributes=DIRECTORY)
        entry(tar, "Files/hello.txt", b"Hello, CIM!\r\n")
        entry(tar, "Files/License.txt", b"Sample license text for the cimkit child layer.\r\n")
        entry(tar, "Files/setup.exe", b"MZ" + bytes(62) + b"sample setup program\r\n")
        entry(tar, "Files/setup.exe:Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3\r\n")
        # go-winio writes a symlink reparse point as a symlink entry with the reparse attribute.
        entry(tar, "Files/link", kind=tarfile.SYMTYPE, attributes=ARCHIVE | REPARSE_POINT,
              link="hello.txt")
        entry(tar, "Files/Tools", kind=tarfile.DIRTYPE, attributes=DIRECTORY)
        entry(tar, "Files/Tools/readme.txt", b"Tools added by the child layer.\r\n")
        # Replaces a file of the base layer.
        entry(tar, "Files/Users/Default/Documents/prov.ini", b"[prov]\r\nchanged=1\r\n")
        # Removes Files\PerfLogs, a folder of the base layer (an OCI whiteout, no PAX records).
        entry(tar, "Files/.wh.PerfLogs", b"", pax=False)
    with open(out, "wb") as f:
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", compresslevel=9, mtime=0) as z:
            z.write(raw.getvalue())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "child-layer.tar.gz")
