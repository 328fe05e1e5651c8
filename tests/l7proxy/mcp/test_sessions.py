from l7proxy.mcp.sessions import SessionTable


def test_a_session_is_found_only_by_its_user_on_its_connection() -> None:
    table = SessionTable()
    session = table.open("alice", "dev", "2025-11-25", now=0.0)
    assert table.find(session.id, "alice", "dev", now=1.0) is session
    assert table.find(session.id, "mallory", "dev", now=1.0) is None
    assert table.find(session.id, "alice", "prod", now=1.0) is None
    table.close(session)
    assert table.find(session.id, "alice", "dev", now=2.0) is None


def test_idle_sessions_expire_and_the_table_is_bounded() -> None:
    table = SessionTable(max_sessions=2, idle_expiry=10.0)
    first = table.open("a", "dev", "v", now=0.0)
    second = table.open("a", "dev", "v", now=0.0)
    assert table.find(first.id, "a", "dev", now=5.0) is first  # now the most recent
    third = table.open("a", "dev", "v", now=5.0)  # the least recently used goes
    assert table.find(second.id, "a", "dev", now=5.0) is None
    assert table.find(third.id, "a", "dev", now=14.0) is third
    assert table.find(first.id, "a", "dev", now=16.0) is None  # idle for 11 s
