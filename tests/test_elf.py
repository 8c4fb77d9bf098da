"""The ELF reader the bundle stage uses: needed libraries, and the hash of loaded content that
keys the registry checks (symbol-table and fatbinary changes must not change it; code must)."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from trtis_build.core import process
from trtis_build.bundle.verify import read_elf
from trtis_server import elf
from trtis_build.core.errors import BundleError

pytestmark = [pytest.mark.compile,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")]


def build(tmp_path, file_name: str, body: str):
    source = tmp_path / file_name
    source.write_text(body)
    library = tmp_path / f"lib{source.stem}.so"
    process.run(["g++", "-shared", "-fPIC", "-O2", str(source), "-o", str(library)], stage="test")
    return library


def test_symbol_table_differences_do_not_change_the_loaded_content_hash(tmp_path):
    code = 'static int helper(int x) { return x * 3; }\nextern "C" int api(int x) { return helper(x) + 1; }\n'
    first = build(tmp_path, "first_name.cc", code)
    # The same code from a differently named file: the symbol table names the file (as nvcc's
    # temporary file names do), nothing the loader maps differs.
    second = build(tmp_path, "second_longer_name.cc", code)
    assert hashlib.sha256(first.read_bytes()).digest() != hashlib.sha256(second.read_bytes()).digest()
    assert elf.loaded_content_sha256(first) == elf.loaded_content_sha256(second)
    changed = build(tmp_path, "changed.cc", code.replace("x * 3", "x * 5"))
    assert elf.loaded_content_sha256(changed) != elf.loaded_content_sha256(first)


def test_sections_and_needed_libraries(tmp_path):
    library = build(tmp_path, "lib.cc", '#include <cstdio>\nextern "C" int api() { return std::puts("x"); }\n')
    names = [name for name, *_ in elf.sections(library)[0]]
    assert ".text" in names and ".dynamic" in names and ".symtab" in names
    assert "libc.so.6" in elf.dynamic_info(library)["needed"]


def test_a_file_that_is_not_elf_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file at all")
    with pytest.raises(elf.ElfError, match="not a 64-bit little-endian ELF"):
        elf.loaded_content_sha256(junk)
    # The bundle stage turns it into the driver's error, naming the file.
    with pytest.raises(BundleError, match="cannot be read") as info:
        read_elf(elf.dynamic_info, junk)
    assert info.value.where == str(junk)
