"""Real-photo object cut-outs for the demo's labeled set: the photo stamps of Debian's Tux Paint package.

``tuxpaint-stamps-default`` (pinned version and SHA-256 below, GPL-2) holds about 300 photographs of single
objects whose alpha channel is an exact mask; the stamp's folder names its kind (``animals/birds``,
``food/fruit`` ...). Nothing is committed: ``python tools/demo/stamps.py DIR`` downloads the package
with ``apt-get download`` (after one ``apt-get update`` when the package list lacks it), checks its SHA-256,
unpacks it with ``dpkg-deb -x`` and keeps only the stamp PNGs (not ``*_mirror.png``) in
``DIR/<package>_<version>/``.
A second run finds that folder and returns at once.

Without ``apt-get`` or ``dpkg-deb`` (a non-Debian machine) it stops with what to install: the demo has no
other source of enough distinct object photos to keep its val objects apart from its train objects.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from soco_proposals.fileio import atomic_directory, sha256_of

PACKAGE = "tuxpaint-stamps-default"
VERSION = "2022.06.04-1"
SHA256 = "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"
STAMPS_IN_PACKAGE = Path("usr/share/tuxpaint/stamps")


class StampsUnavailable(RuntimeError):
    """The stamp package cannot be fetched here; the message says what to install or do."""


def deb_name() -> str:
    return f"{PACKAGE}_{VERSION}_all.deb"


def stamps_dir(cache_dir: str | os.PathLike) -> Path:
    """Where :func:`fetch_stamps` puts the stamp PNGs (the tree below ``usr/share/tuxpaint/stamps``)."""
    return Path(cache_dir) / f"{PACKAGE}_{VERSION}"


def _missing_tools_message(missing: list[str], deb: Path) -> str:
    return (
        f"the demo's object cut-outs come from Debian's {PACKAGE} {VERSION}, and this machine lacks "
        f"{' and '.join(missing)}. Run on Debian/Ubuntu (apt-get and dpkg-deb are in the 'apt' and 'dpkg' "
        f"packages), or download {deb.name} (SHA-256 {SHA256}) from a Debian mirror yourself, put it at "
        f"{deb} and install dpkg-deb. The demo does not fall back to its older cut-outs: they come from 4 "
        "photos (a quokka, two fish, one photo of coins), too few to keep val objects apart from train ones."
    )


def _download(deb_dir: Path) -> Path:
    """``apt-get download PACKAGE=VERSION`` into ``deb_dir``, with one ``apt-get update`` if needed."""
    deb = deb_dir / deb_name()
    command = ["apt-get", "download", f"{PACKAGE}={VERSION}"]
    result = subprocess.run(command, cwd=deb_dir, capture_output=True, text=True)
    if result.returncode != 0:
        # A fresh container has no package lists yet; 'apt-get update' fetches them (root only).
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        if update.returncode != 0:
            raise StampsUnavailable(
                f"'apt-get download {PACKAGE}={VERSION}' failed ({result.stderr.strip()[-300:]}) and "
                f"'apt-get update' failed too ({update.stderr.strip()[-300:]}); run 'apt-get update' as root "
                "and try again"
            )
        result = subprocess.run(command, cwd=deb_dir, capture_output=True, text=True)
    if result.returncode != 0 or not deb.is_file():
        raise StampsUnavailable(
            f"'apt-get download {PACKAGE}={VERSION}' failed in {deb_dir}: {result.stderr.strip()[-500:]}"
        )
    return deb


def fetch_stamps(cache_dir: str | os.PathLike) -> Path:
    """The folder of stamp PNGs, downloaded and unpacked into ``cache_dir`` on the first call.

    A ``.deb`` already at ``cache_dir/debs/`` (placed by hand) is used instead of downloading; the downloaded
    one is deleted after unpacking (161 MB). The stamps are copied into a temporary folder that is renamed at
    the end, so an interrupted run is never taken for a complete one.
    """
    target = stamps_dir(cache_dir)
    if target.is_dir():
        return target
    deb_dir = Path(cache_dir) / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    deb = deb_dir / deb_name()
    placed_by_hand = deb.is_file()
    missing = [
        tool for tool in ("dpkg-deb", *([] if placed_by_hand else ["apt-get"])) if not shutil.which(tool)
    ]
    if missing:
        raise StampsUnavailable(_missing_tools_message(missing, deb))
    if not placed_by_hand:
        deb = _download(deb_dir)
    digest = sha256_of(deb)
    if digest != SHA256:
        raise StampsUnavailable(
            f"{deb} has SHA-256 {digest}, expected {SHA256} ({PACKAGE} {VERSION}); delete it and run again"
        )
    with tempfile.TemporaryDirectory(dir=cache_dir) as unpacked, atomic_directory(target) as partial:
        result = subprocess.run(["dpkg-deb", "-x", str(deb), unpacked], capture_output=True, text=True)
        if result.returncode != 0:
            raise StampsUnavailable(f"'dpkg-deb -x {deb}' failed: {result.stderr.strip()[-500:]}")
        source = Path(unpacked) / STAMPS_IN_PACKAGE
        for png in sorted(source.rglob("*.png")):
            if not png.name.endswith("_mirror.png"):  # a left-right flip of another stamp
                out = partial / png.relative_to(source)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, out)
    if not placed_by_hand:
        deb.unlink()
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cache_dir", help="folder for the package and the unpacked stamps")
    args = parser.parse_args()
    try:
        folder = fetch_stamps(args.cache_dir)
    except StampsUnavailable as error:
        raise SystemExit(f"error: {error}") from None
    print(f"stamps ready in {folder} ({len(list(folder.rglob('*.png')))} PNG files)")


if __name__ == "__main__":
    main()
