"""Reading zip members by offset: stored and deflated members, one descriptor per process, refusals."""

from __future__ import annotations

import multiprocessing
import zipfile

import pytest

from soco_proposals import zip_archive
from soco_proposals.zip_archive import ZipMember, member_table, read_member


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "train.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("n01/stored.JPEG", b"\xff\xd8 stored bytes" * 50, compress_type=zipfile.ZIP_STORED)
        zf.writestr("n01/deflated.JPEG", b"deflated bytes " * 200, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("n01/", b"")  # a directory entry
    return path


def _members(archive):
    return {name: ZipMember(str(archive), *row) for name, row in member_table(archive).items()}


def test_members_read_back_their_bytes(archive):
    members = _members(archive)
    assert sorted(members) == ["n01/deflated.JPEG", "n01/stored.JPEG"], "directories are left out"
    with zipfile.ZipFile(archive) as zf:
        for name, member in members.items():
            assert read_member(member) == zf.read(name)


def _descriptor_in_child(archive, queue):
    member = next(iter(_members(archive).values()))
    read_member(member)
    queue.put(zip_archive._HANDLES[str(archive)])


def test_each_process_opens_its_own_descriptor(archive):
    member = _members(archive)["n01/stored.JPEG"]
    read_member(member)
    parent = zip_archive._HANDLES[str(archive)]
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_descriptor_in_child, args=(archive, queue))
    child.start()
    child_pid, _ = queue.get(timeout=30)
    child.join()
    assert child_pid == child.pid != parent[0], (
        "the child re-opened the archive instead of using the parent's"
    )
    assert zip_archive._HANDLES[str(archive)] == parent, "the parent's descriptor is untouched"
    read_member(member)


def test_unsupported_compression_and_a_moved_member_are_refused(archive, tmp_path):
    other = tmp_path / "bz2.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("a.JPEG", b"x" * 100, compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(ValueError, match="a.JPEG uses compression method 12"):
        member_table(other)
    member = _members(archive)["n01/stored.JPEG"]
    with pytest.raises(zipfile.BadZipFile, match="no local file header"):
        read_member(
            ZipMember(member.archive, member.header_offset + 3, member.compressed_size, member.method)
        )
