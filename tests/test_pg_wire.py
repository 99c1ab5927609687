"""QUERIES rendering of PostgreSQL frontend bytes: on what psql and asyncpg really send through a
recording proxy (as an access gateway records them), and on bytes no client would send."""

import asyncio
import os
import random
import shutil
import socket
import struct
import tracemalloc

import asyncpg
import pytest

from sessiongraph.models.pg_wire import queries_text

POSTGRES = ("127.0.0.1", 5432)


def _postgres_reachable() -> bool:
    try:
        socket.create_connection(POSTGRES, timeout=2).close()
    except OSError:
        return False
    return True


needs_postgres = pytest.mark.skipif(not _postgres_reachable(), reason="no PostgreSQL at 127.0.0.1:5432")
needs_psql = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not on PATH")


async def recorded_chunks(client) -> list[bytes]:
    """The client->server bytes of `await client(port)`, one item per read, as a gateway records them."""
    chunks: list[bytes] = []

    async def pump(reader, writer, record):
        try:
            while data := await reader.read(65536):
                if record:
                    chunks.append(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(*POSTGRES)
        await asyncio.gather(
            pump(client_reader, server_writer, True), pump(server_reader, client_writer, False)
        )

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with proxy:
        await client(proxy.sockets[0].getsockname()[1])
        await asyncio.sleep(0.1)  # the last chunk (Terminate) reaches the proxy after the client is done
    return chunks


def rendered_statements(chunks: list[bytes]) -> list[str]:
    renderings = [queries_text(chunk) for chunk in chunks]
    assert None not in renderings, "every chunk a client sent is wire protocol"
    return [line for rendering in renderings for line in rendering.splitlines()]


async def psql(*arguments: str):
    async def run(port: int):
        process = await asyncio.create_subprocess_exec(
            "psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", *arguments,
            env={**os.environ, "PGSSLMODE": "disable"},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await process.communicate()
        assert process.returncode == 0, errors.decode()

    return await recorded_chunks(run)


def query(sql: bytes) -> bytes:
    return b"Q" + struct.pack("!I", len(sql) + 5) + sql + b"\0"


def parse(name: bytes, sql: bytes, *type_oids: int) -> bytes:
    body = name + b"\0" + sql + b"\0" + struct.pack(f"!H{len(type_oids)}I", len(type_oids), *type_oids)
    return b"P" + struct.pack("!I", len(body) + 4) + body


SYNC = b"S\x00\x00\x00\x04"


@needs_postgres
@needs_psql
async def test_psql_command_renders_one_line_per_statement():
    chunks = await psql("-c", "SELECT 1; SELECT 'a;b'")
    assert rendered_statements(chunks) == ["SELECT 1", "SELECT 'a;b'"]
    assert queries_text(chunks[0]) == ""  # the StartupMessage: user and database, no SQL


@needs_postgres
@needs_psql
async def test_psql_file_renders_each_statement_folded_onto_one_line(tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(
        "-- a session's script\n"
        "SELECT 1 AS one;\n"
        "SELECT 'a;b' AS s,\n"
        "       2 AS two;\n"
        "SELECT 1 -- first\n"
        "  + 1 AS sum;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "CREATE FUNCTION pg_temp.answer() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  SELECT 42;\n"
        "END;\n"
        "SELECT E'it\\'s; fine', $tag$ ; $tag$;\n"
    )
    chunks = await psql("-f", str(script))
    assert rendered_statements(chunks) == [
        "SELECT 1 AS one",
        "SELECT 'a;b' AS s, 2 AS two",
        "SELECT 1 /* first */ + 1 AS sum",
        "DO $$ BEGIN PERFORM 1; END $$",
        "CREATE FUNCTION pg_temp.answer() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 42; END",
        "SELECT E'it\\'s; fine', $tag$ ; $tag$",
    ]


@needs_postgres
async def test_asyncpg_prepared_and_simple_queries_render_as_sent():
    async def run(port: int):
        connection = await asyncpg.connect(
            host="127.0.0.1", port=port, user="postgres", database="postgres", ssl=False
        )
        try:
            assert await connection.fetchval("SELECT $1::int", 5) == 5
            assert await connection.fetchval("SELECT $1::text || 'x'", "a") == "ax"
            await connection.execute("SELECT 1; SELECT 2")
        finally:
            await connection.close()

    chunks = await recorded_chunks(run)
    assert rendered_statements(chunks) == ["SELECT $1::int", "SELECT $1::text || 'x'", "SELECT 1", "SELECT 2"]
    bind_chunks = [chunk for chunk in chunks if chunk.startswith(b"B")]
    assert bind_chunks and all(queries_text(chunk) == "" for chunk in bind_chunks)  # Bind/Execute/Sync: no SQL


def test_shell_output_is_not_wire_protocol():
    for chunk in (b"ls -la\n", b"Sure, run it\n", b"Q", b"\x03", "héllo\n".encode()):
        assert queries_text(chunk) is None


def test_empty_chunk_renders_as_utf8():
    assert queries_text(b"") is None


def test_message_split_across_two_chunks():
    long_query = query(b"SELECT '" + b"x" * 100 + b"'")
    stream = query(b"SELECT 1") + long_query + SYNC
    cut = len(query(b"SELECT 1")) + 40
    first, second = stream[:cut], stream[cut:]
    # The complete Query is SQL; the partial one is shown as UTF8 would, not dropped nor passed off as SQL.
    assert queries_text(first) == "SELECT 1\n" + first[len(query(b"SELECT 1")) :].decode("utf-8", "replace")
    assert queries_text(second) is None  # starts mid-message: the whole chunk renders as UTF8
    assert queries_text(first + second) == "SELECT 1\nSELECT '" + "x" * 100 + "'"


def test_bad_message_after_good_ones_falls_back_from_there():
    assert queries_text(query(b"SELECT 1") + b"ls -la\n") == "SELECT 1\nls -la\n"
    nul_inside = b"Q\x00\x00\x00\x09ab\x00c\x00"  # a Query's SQL cannot hold a NUL
    assert queries_text(query(b"SELECT 1") + nul_inside) == "SELECT 1\n" + nul_inside.decode()
    assert queries_text(b"S\x00\x00\x00\x05x") is None  # a Sync never has a body


def test_huge_length_field_allocates_nothing():
    tracemalloc.start()
    try:
        for chunk in (
            b"Q\x7f\xff\xff\xffSELECT 1\x00",
            b"Q\xff\xff\xff\xffSELECT 1\x00",
            b"\x7f\xff\xff\xff\x00\x03\x00\x00user\x00x\x00\x00",
            b"P\x00\x00\x00\x10s\x00q\x00\xff\xff",  # 65535 parameter types announced, none present
        ):
            assert queries_text(chunk) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_truncations_and_garbage_never_raise():
    stream = (
        b"\x00\x00\x00\x08\x04\xd2\x16/"  # SSLRequest
        + query(b"SELECT 1; SELECT 2")
        + parse(b"s1", b"SELECT $1::int", 23)
        + b"B\x00\x00\x00\x0e\x00s1\x00\x00\x00\x00\x00\x00\x00"
        + SYNC
    )
    assert queries_text(stream) == "SELECT 1\nSELECT 2\nSELECT $1::int"
    for cut in range(len(stream) + 1):
        for chunk in (stream[:cut], stream[cut:]):
            rendering = queries_text(chunk)
            assert rendering is None or isinstance(rendering, str)
    generator = random.Random(15)
    for _ in range(5000):
        size = generator.randint(0, 24)
        chunk = bytes(generator.choice(b"QPBSX\x00\x01\x04;'$-/*\n a") for _ in range(size))
        rendering = queries_text(chunk)
        assert rendering is None or isinstance(rendering, str)


def test_password_and_startup_messages_render_nothing():
    password = b"p\x00\x00\x00\x0esecret123\x00"
    startup = b"\x00\x00\x00\x14\x00\x03\x00\x00user\x00alice\x00\x00"
    assert queries_text(startup) == ""
    assert queries_text(b"\x00\x00\x00\x09\x00\x03\x00\x02\x00") == ""  # protocol 3.2, no parameters
    assert queries_text(b"\x00\x00\x00\x09\x00\x04\x00\x00\x00") is None  # no protocol 4
    assert queries_text(b"\x00\x00\x00\x09\x00\x03\x00\x00x") is None  # parameters not terminated
    assert queries_text(password) == ""
    assert queries_text(password + query(b"SELECT 1")) == "SELECT 1"
    cancel = b"\x00\x00\x00\x10\x04\xd2\x16.\x00\x00\x00\x01\x00\x00\x00\x02"
    assert queries_text(cancel) == ""


def test_invalid_utf8_in_sql_is_replaced():
    assert queries_text(query(b"SELECT '\xff'")) == "SELECT '\ufffd'"


def test_statements_are_split_only_where_postgres_would():
    cases = {
        b"SELECT $$a;b$$; SELECT $x$ $$ ; $x$": ["SELECT $$a;b$$", "SELECT $x$ $$ ; $x$"],
        b"/* a; /* b; */ c; */ SELECT 1;": ["/* a; /* b; */ c; */ SELECT 1"],
        b'SELECT "a;""b"; SELECT (1; 2)': ['SELECT "a;""b"', "SELECT (1; 2)"],
        b"SELECT a$b$c; SELECT $1": ["SELECT a$b$c", "SELECT $1"],
        b"BEGIN; SELECT CASE WHEN true THEN 1 END; END;;": ["BEGIN", "SELECT CASE WHEN true THEN 1 END", "END"],
        b"CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN 1 > 0 THEN 1 END; SELECT 2; END; CALL p()": [
            "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN 1 > 0 THEN 1 END; SELECT 2; END",
            "CALL p()",
        ],
        b"SELECT 'line\none';\nSELECT 2 --done": ["SELECT 'line\none'", "SELECT 2 /* done */"],
        b"SELECT 1 -- no */ escape\n, 2": ["SELECT 1 /* no * / escape */ , 2"],
        b"SELECT 'unterminated; SELECT 2": ["SELECT 'unterminated; SELECT 2"],
        b";;  \n": [],
    }
    for sql, statements in cases.items():
        assert queries_text(query(sql)) == "\n".join(statements), sql
