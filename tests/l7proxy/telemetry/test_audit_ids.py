"""Audit ids: version-4 UUIDs formatted by hand, the same text as the uuid module's."""

from __future__ import annotations

import os
import uuid

from hypothesis import given
from hypothesis import strategies as st

from l7proxy.telemetry.audit import AuditIds, format_uuid4


@given(st.binary(min_size=16, max_size=16))
def test_format_uuid4_is_the_uuid_modules_text_for_any_bytes(raw: bytes) -> None:
    assert format_uuid4(raw) == str(uuid.UUID(bytes=raw, version=4))


def test_audit_ids_are_distinct_version_4_uuids_across_many_reads() -> None:
    ids = AuditIds()
    seen = [ids.new() for _ in range(3000)]  # several 4 KiB reads of random bytes
    assert len(set(seen)) == len(seen)
    for text in seen:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = AuditIds()
    ids.new()  # the pool is filled before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write_end, ids.new().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert uuid.UUID(child_id).version == 4
    assert child_id != ids.new()
