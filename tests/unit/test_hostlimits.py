"""Sizing the host's file table (fake /proc files, no root needed)."""

from __future__ import annotations

from pathlib import Path

from tvm.pyrovm import hostlimits


def _proc(tmp_path: Path, file_max: int, in_use: int) -> tuple[Path, Path]:
    (tmp_path / "file-max").write_text(f"{file_max}\n")
    (tmp_path / "file-nr").write_text(f"{in_use}\t0\t{file_max}\n")
    return tmp_path / "file-max", tmp_path / "file-nr"


def test_a_small_table_is_raised_to_what_the_sandboxes_could_hold(tmp_path: Path) -> None:
    file_max, file_nr = _proc(tmp_path, 2_466_165, 3000)
    size = hostlimits.size_file_table(10, 2048, file_max, file_nr)
    need = 3000 + hostlimits.HOST_FILES + 10 * ((2048 << 20) // hostlimits.FILE_BYTES)
    assert size == need == int(file_max.read_text())


def test_a_large_table_is_never_lowered(tmp_path: Path) -> None:
    file_max, file_nr = _proc(tmp_path, 9223372036854775807, 3000)
    assert hostlimits.size_file_table(10, 2048, file_max, file_nr) == 9223372036854775807
    assert file_max.read_text() == "9223372036854775807\n"


def test_an_unwritable_table_is_left_as_it_is(tmp_path: Path) -> None:
    file_max, file_nr = _proc(tmp_path, 1000, 10)
    file_max.chmod(0o444)
    missing = tmp_path / "absent"
    assert hostlimits.size_file_table(1, 64, missing, file_nr) is None
    assert hostlimits.files_per_sandbox(64) == (64 << 20) // hostlimits.FILE_BYTES
