"""Whole-file checks that run before a data file is parsed: what the path is, whether it can be read, and whether
its bytes are what its name promises (gzip, UTF-8 text).

    from tunesmith.data.files import check_data_file
    check_data_file(Path("train.jsonl.gz"), text=True)   # raises DataError naming the file and the reason

Anything that is not a regular file (a FIFO, a socket, a device) is refused before it is read: opening a FIFO for
reading waits for a writer, so the path is opened non-blocking and checked with fstat on that very descriptor.
Text is expected to be UTF-8 (a UTF-8 byte-order mark is accepted); UTF-16/32 and single-byte encodings such as
Latin-1 are recognised from the first bytes and refused with the conversion to run, instead of turning every row
into an error.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import os
import stat
import zlib
from pathlib import Path

from tunesmith.errors import TunesmithError

SNIFF_BYTES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"
# Errors a gzip stream raises for bytes that are not gzip, a corrupt deflate stream, or a cut-off file.
GZIP_ERRORS = (OSError, EOFError, zlib.error)
_UTF16_32 = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class DataError(TunesmithError):
    """A whole file cannot be used; the message names the file and says what to change."""


def check_data_file(path: Path, text: bool = True, single_byte: bool = True) -> None:
    """Raise DataError unless `path` is a readable, non-empty regular file; for a `.gz` name, unless it is gzip data
    that decompresses; with `text`, unless its (decompressed) first bytes are UTF-8 (or, without `single_byte`, at
    least not UTF-16/32 or binary: redaction copies other bytes through unchanged)."""
    name = str(path)
    head = _read_head(path, name)
    if path.suffix.lower() == ".gz":
        head = _gunzip_head(path, name, head)
    if text:
        problem = encoding_problem(head, single_byte)
        if problem is not None:
            raise DataError(f"{name}: {problem}")


def _read_head(path: Path, name: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DataError(
            f"{name}: file not found (relative data paths resolve against the config file's folder)"
        ) from None
    except PermissionError:
        raise DataError(f"{name}: permission denied; make the file readable (chmod u+r)") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataError(f"{name}: a loop of symbolic links; point the link at a data file") from None
        raise DataError(f"{name}: cannot open the file: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{name}: is a directory; set path to a data file inside it")
        what = next((label for test, label in _NOT_REGULAR if test(info.st_mode)), None)
        if what is not None:
            raise DataError(f"{name}: is {what}, not a regular file; save the data to a file and point at that")
        if info.st_size == 0:
            raise DataError(f"{name}: file is empty")
        try:
            return os.read(fd, SNIFF_BYTES)
        except OSError as err:
            raise DataError(f"{name}: cannot read the file: {err.strerror or err}") from None
    finally:
        os.close(fd)


def _gunzip_head(path: Path, name: str, head: bytes) -> bytes:
    if not head.startswith(GZIP_MAGIC):
        raise DataError(f"{name}: named .gz but not gzip-compressed; rename it without .gz, or compress it with gzip")
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(SNIFF_BYTES)
    except GZIP_ERRORS as err:
        raise DataError(f"{name}: {gzip_problem(err)}") from None
    if not data:
        raise DataError(f"{name}: file is empty (the gzip stream holds no data)")
    return data


def gzip_problem(err: BaseException) -> str:
    """What a gzip read error means to the user."""
    if isinstance(err, EOFError):
        return "the gzip file is truncated (it ends before its end-of-stream marker); copy or compress it again"
    return f"not valid gzip data ({err}); copy or compress it again"


def encoding_problem(head: bytes, single_byte: bool = True) -> str | None:
    """Why text starting with these bytes is not UTF-8, with what to do; None when it is (or may be) UTF-8. Without
    `single_byte`, text in a single-byte encoding (Latin-1) passes."""
    for bom, encoding in _UTF16_32:
        if head.startswith(bom):
            return (
                f"the file is {encoding} text (it starts with a {encoding} byte-order mark); tunesmith reads UTF-8: "
                f"convert it, e.g. iconv -f {encoding} -t UTF-8"
            )
    if b"\x00" in head:
        zeros = head.count(b"\x00") / len(head)
        what = "UTF-16 text without a byte-order mark" if zeros > 0.25 else "a binary file"
        return f"the file holds NUL bytes, so it looks like {what}, not UTF-8 text; save it as UTF-8"
    if not single_byte:
        return None
    lines = head.split(b"\n")
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # cut off by the sample: its last character may be incomplete
    lines = [line for line in lines if line.strip()]
    bad = [i for i, line in enumerate(lines) if not _is_utf8(line)]
    # One bad byte costs one row (loading.py reports it with its line); a file whose lines are mostly not UTF-8, with
    # no UTF-8 character among them, was written in another encoding, and the fix is converting the whole file.
    if not bad or 2 * len(bad) <= len(lines) or any(not line.isascii() and _is_utf8(line) for line in lines):
        return None
    first = lines[bad[0]]
    byte = next(b for b in first if b >= 0x80)
    return (
        f"not UTF-8 text ({len(bad)} of the first {len(lines)} lines are not, the first is line {bad[0] + 1} with "
        f"byte 0x{byte:02x}): it looks like a single-byte encoding such as Latin-1 or Windows-1252; tunesmith reads "
        "UTF-8: convert it, e.g. iconv -f latin1 -t UTF-8"
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
