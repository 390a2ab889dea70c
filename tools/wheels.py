"""Minimal wheels (and plain zips) built inside tests: enough for ``pip download --no-index
--find-links``, and for the sources that read a zip."""

import zipfile


def make_wheel(directory, name, version, members):
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``members`` (archive path → bytes)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for arc, data in members.items():
            z.writestr(arc, data)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return path


def write_zip(path, members):
    """Write a plain zip at ``path`` holding ``members`` (archive path → bytes); returns it."""
    with zipfile.ZipFile(path, "w") as z:
        for arc, data in members.items():
            z.writestr(arc, data)
    return path
