"""EXIF metadata of JPEG files: the orientation a camera declares, read without decoding.

The COCO loader decodes images as stored (``IMREAD_IGNORE_ORIENTATION``, as the official loader
does) and counts those that declare a rotation (see data/README.md).
"""

from __future__ import annotations


def jpeg_exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1 to 8) that JPEG file bytes declare; 1 (as stored) if none.

    Reads only the marker segments before the image data. Anything unparsable counts as 1.
    """
    if data[:2] != b"\xff\xd8":
        return 1
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return 1
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            return 1
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xE1 and data[position + 4:position + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[position + 10:position + 2 + length])
        position += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of the first IFD of an EXIF TIFF block; 1 if absent."""
    byte_order = {b"II": "little", b"MM": "big"}.get(bytes(tiff[:2]))
    if byte_order is None or len(tiff) < 8:
        return 1
    first_ifd = int.from_bytes(tiff[4:8], byte_order)
    if first_ifd + 2 > len(tiff):
        return 1
    for entry in range(int.from_bytes(tiff[first_ifd:first_ifd + 2], byte_order)):
        start = first_ifd + 2 + 12 * entry
        if start + 12 > len(tiff):
            break
        if int.from_bytes(tiff[start:start + 2], byte_order) == 0x0112:
            # A SHORT value sits in the first two bytes of the entry's 4-byte value field.
            value = int.from_bytes(tiff[start + 8:start + 10], byte_order)
            return value if 1 <= value <= 8 else 1
    return 1
