"""No long-lived shared database credential in a user's server: the control plane (a real
JupyterHub's service, tests/hub.py) holds the owner's login and issues each user's Jupyter
server a short-lived PostgreSQL login of its own, and PostgreSQL itself (grants and row-level
security, ``db/roles.py``) keeps each login to what its user may touch.

The user servers here run with such logins (their ``db_url`` names no user and no password).
What alice's login may not do is tried in raw SQL with the very login her server would get,
as someone who read it out of their server's memory would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import requests
from psycopg import errors
from sqlalchemy import text
from sqlalchemy.engine import make_url

from jupyter_compute_servers.config import ComputeServersSettings
from jupyter_compute_servers.control_plane_client import ControlPlaneClient
from jupyter_compute_servers.db import Database, roles, usage
from jupyter_compute_servers.db.credentials import DatabaseCredentials
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.services import team_admin_source
from jupyter_compute_servers.team import Team
from jupyter_compute_servers.team_admins import OwnerAdmin

from .hub import ADMIN, ADMIN_GROUP, SERVICE, Hub, wait_state
from .postgres import free_port


@pytest.fixture(scope="module")
def hub(postgres_server) -> Iterator[Hub]:
    # carol: named an admin in the user servers' team_admin_users, whom the control plane
    # (the one rule) was not told of: ignored.
    hub = Hub(
        postgres_server.create_database(), enabled_clouds=["local"], team_admin_users=["carol"]
    )
    try:
        for user in ("alice", "bob", ADMIN, "carol"):
            hub.start_server(user)
        yield hub
    finally:
        hub.close()


def _ask(hub: Hub, token: str | None, body: Any = None) -> requests.Response:
    return requests.post(
        f"{hub.url}/services/{SERVICE}/api/database-credentials",
        headers={"Authorization": f"token {token}"} if token else {},
        json={} if body is None else body,
        timeout=30,
    )


def _issued(hub: Hub, user: str) -> dict[str, Any]:
    response = _ask(hub, hub.service_token(user))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _connect(login: dict[str, Any], **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(
        host=login["host"],
        port=login["port"],
        dbname=login["dbname"],
        user=login["user"],
        password=login["password"],
        autocommit=True,
        **kwargs,
    )


@pytest.mark.timeout(600)
def test_a_users_server_runs_on_its_own_login_and_postgres_keeps_it_to_its_rows(
    hub: Hub,
) -> None:
    dbname = make_url(hub.db_url).database
    assert dbname is not None
    # The user servers' configuration holds no password, nor any user name.
    config = (hub.config.server_config_dir / "jupyter_server_config.py").read_text()
    assert f'db_url = "postgresql://127.0.0.1:{make_url(hub.db_url).port}/{dbname}"' in config
    # and the Hub's (the control plane's environment) has the owner's
    assert f'"COMPUTE_SERVERS_DB_URL": "{hub.db_url}"' in hub.config.config_file.read_text()

    # Alice creates, lists, starts and stops her server through her Jupyter, on her login.
    created = hub.call("alice", "POST", "/servers", body={"name": "alice-box"})
    assert created.status_code == 201, created.text
    mine = created.json()["id"]
    assert [s["id"] for s in hub.call("alice", "GET", "/servers").json()["servers"]] == [mine]
    assert hub.call("alice", "POST", f"/servers/{mine}/actions/start").status_code == 202
    wait_state(hub, "alice", mine, "running")
    assert hub.call("alice", "POST", f"/servers/{mine}/actions/stop").status_code == 202
    wait_state(hub, "alice", mine, "off")
    theirs = hub.call("bob", "POST", "/servers", body={"name": "bob-box"}).json()["id"]

    # Her server's connections are her login's, not the owner's.
    owner = Database(hub.db_url, migrate=False)
    with owner.read() as db:
        logged_in = set(
            db.execute(
                text("SELECT usename FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}
            ).scalars()
        )
    assert roles.login_role(dbname, "alice") in logged_in
    assert roles.login_role(dbname, "bob") in logged_in
    host = HostStore(owner, clock=time.time).create(
        name="shared", hostname="10.0.0.1", port=22, username="u"
    )
    owner.close()

    # The login alice's server gets, used by hand: everything it may not touch, refused by
    # PostgreSQL whatever the SQL says.
    alice = _issued(hub, "alice")
    assert alice["hub_user"] == "alice" and alice["admin"] is False
    assert alice["user"] == roles.login_role(dbname, "alice")
    assert alice["expires_at"] - time.time() == pytest.approx(3600, abs=120)
    with _connect(alice) as sql:

        def refused(statement: str, *params: Any) -> str:
            with pytest.raises(errors.InsufficientPrivilege) as error:
                sql.execute(statement, params)
            return str(error.value)

        # Bob's server: not hers to read (what the queue needs of it, through the narrow
        # views: test_a_users_login_reads_its_own_rows_and_of_others_only_the_usage_views)
        # nor to change.
        assert sql.execute("SELECT owner FROM servers WHERE id = %s", (theirs,)).fetchone() is None
        for statement in (
            "UPDATE servers SET notes = 'alice was here', state = 'running' WHERE id = %s",
            "DELETE FROM servers WHERE id = %s",
            "DELETE FROM sync_settings WHERE server_id = %s",
        ):
            assert sql.execute(statement, (theirs,)).rowcount == 0
        # Nor given to anyone, made in another's name, or written into another's history.
        assert "row-level security" in refused(
            "UPDATE servers SET owner = 'bob' WHERE id = %s", mine
        )
        assert "row-level security" in refused(
            "INSERT INTO servers (name, color, cloud, state, config, created, updated, owner) "
            "VALUES ('x', '#000000', 'local', 'off', '{}', 0, 0, 'bob')"
        )
        assert "row-level security" in refused(
            "INSERT INTO state_history (server_id, at, state, owner) VALUES (%s, 0, 'off', 'bob')",
            theirs,
        )
        assert "row-level security" in refused(
            "INSERT INTO host_slices (server_id, host_id, cpu, memory_gb, token, allocated) "
            "VALUES (%s, %s, 1, 1, 't', 0)",
            theirs,
            host.id,
        )
        assert "row-level security" in refused(
            "INSERT INTO sync_settings (server_id, settings) VALUES (%s, '{}')", theirs
        )
        # A shared host's address, account, pinned key and prices are the admins'.
        for column, value in (
            ("host_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMallory"),
            ("hostname", "attacker.example.org"),
            ("port", 2222),
            ("username", "root"),
            ("hourly_rate", 0.0),
        ):
            assert "permission denied for table hosts" in refused(
                f"UPDATE hosts SET {column} = %s WHERE id = %s", value, host.id
            )
        assert "permission denied" in refused("DELETE FROM hosts")
        assert "permission denied" in refused(
            "INSERT INTO hosts (name, hostname, port, username, created, updated) "
            "VALUES ('mine', 'h', 22, 'u', 0, 0)"
        )
        # The audit log: INSERT only, as herself; its past is not hers to read or rewrite.
        for statement in (
            "DELETE FROM audit_log",
            "UPDATE audit_log SET actor = 'bob'",
            "SELECT * FROM audit_log",
            "TRUNCATE audit_log",
            "DELETE FROM state_history",
            "SELECT * FROM database_logins",
        ):
            assert "permission denied" in refused(statement)
        assert "row-level security" in refused(
            "INSERT INTO audit_log (at, actor, owner, action) VALUES (0, 'bob', 'bob', 'delete')"
        )
        # (No new roles, no schema changes.)
        assert "permission denied to create role" in refused("CREATE ROLE mallory LOGIN")
        assert "must be owner" in refused("ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY")
        # Her own rows are hers: the same statements on her server work.
        assert sql.execute("UPDATE servers SET notes = 'mine' WHERE id = %s", (mine,)).rowcount == 1
    assert hub.call("alice", "GET", f"/servers/{mine}").json()["notes"] == "mine"
    assert hub.call("bob", "GET", f"/servers/{theirs}").json()["notes"] == ""

    # An admin's login may change a host and read the audit log, but not rewrite it.
    admin = _issued(hub, ADMIN)
    assert admin["admin"] is True
    with _connect(admin) as sql:
        assert (
            sql.execute("UPDATE hosts SET hourly_rate = 1.5 WHERE id = %s", (host.id,)).rowcount
            == 1
        )
        assert sql.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0  # type: ignore[index]
        with pytest.raises(errors.InsufficientPrivilege):
            sql.execute("DELETE FROM audit_log")

    # Each issue is a new password: the one before no longer logs in.
    again = _issued(hub, "alice")
    assert again["password"] != alice["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(alice).close()
    _connect(again).close()


def test_a_login_stops_working_for_new_connections_when_it_expires(hub: Hub) -> None:
    # (the module's database: a new one would drop it, tests/postgres.py)
    database = Database(hub.db_url, migrate=False)
    try:
        # What the control plane runs for each request, with a life of 3 seconds.
        with database.transaction() as db:
            login = roles.issue(db, "carol", validity=3)
        url = make_url(database.url)
        address = {"host": url.host, "port": url.port, "dbname": url.database}
        issued = {**address, "user": login.role, "password": login.password}
        with _connect(issued) as open_before:
            while time.time() < login.expires_at + 1:
                time.sleep(0.5)
            # A new login: refused. The connection opened before: still at work.
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                _connect(issued).close()
            assert open_before.execute("SELECT compute_servers_hub_user()").fetchone() == ("carol",)
    finally:
        database.close()


def test_a_users_database_renews_its_login_and_replaces_one_postgres_refuses(hub: Hub) -> None:
    now = [time.time()]
    credentials = DatabaseCredentials(
        ControlPlaneClient(f"{hub.url}/services/{SERVICE}/", hub.service_token("bob")),
        clock=lambda: now[0],
    )
    user_url = "postgresql://" + hub.db_url.split("@", 1)[1]
    database = Database(user_url, credentials=credentials)

    def who() -> tuple[str, str]:
        with database.read() as db:
            row = db.execute(text("SELECT current_user, compute_servers_hub_user()")).one()
            return row[0], row[1]

    try:
        first = credentials.current()
        held = database.engine.connect()  # a connection of the first login, kept open
        assert who() == (first.user, "bob")
        life = first.expires_at - now[0]
        now[0] += life * 0.5  # half its life: kept
        assert credentials.current() is first
        now[0] += life * 0.3  # past three quarters: the next new connection has a new one
        database.engine.dispose()
        assert who() == (first.user, "bob")
        second = credentials.current()
        assert second is not first and second.password != first.password
        assert held.execute(text("SELECT 1")).scalar() == 1  # the open one kept working

        # Another of bob's processes asks for a login (a new password): this one's next new
        # connection is refused, asks anew and logs in.
        _issued(hub, "bob")
        database.engine.dispose()
        assert who() == (first.user, "bob")
        assert credentials.current() is not second
        held.close()
    finally:
        database.close()


def test_the_control_plane_issues_logins_to_hub_users_only(hub: Hub) -> None:
    token = hub.service_token("alice")
    # No token, a token without the service's scope, the Hub's own test service: refused.
    assert _ask(hub, None).status_code in (401, 403)
    assert _ask(hub, hub.tokens["alice"]).status_code == 403
    service = _ask(hub, hub.token)
    assert service.status_code == 403, service.text
    assert service.json()["field"] == "token"
    # Nothing may be asked for: not a longer life, not another's login.
    for body, field in (({"hub_user": "bob"}, "hub_user"), ([], "body")):
        bad = _ask(hub, token, body)
        assert bad.status_code == 400 and bad.json()["field"] == field, bad.text
    # A user server whose login is refused says why at start (here: a token of no scope).
    user_url = "postgresql://" + hub.db_url.split("@", 1)[1]
    with pytest.raises(Exception, match=r"The control plane refused a database login \(403\)"):
        Database(
            user_url,
            credentials=DatabaseCredentials(
                ControlPlaneClient(f"{hub.url}/services/{SERVICE}/", hub.tokens["alice"])
            ),
        )


def test_a_users_server_on_an_older_schema_refuses_to_start_saying_why(hub: Hub) -> None:
    # (as after an upgrade of the package, before the control plane's restart migrated it)
    owner = Database(hub.db_url, migrate=False)
    head = Database.head_revision()
    with owner.transaction() as db:
        db.execute(text("UPDATE alembic_version SET version_num = '0006'"))
    try:
        credentials = DatabaseCredentials(
            ControlPlaneClient(f"{hub.url}/services/{SERVICE}/", hub.service_token("bob"))
        )
        with pytest.raises(RuntimeError) as refused:
            Database("postgresql://" + hub.db_url.split("@", 1)[1], credentials=credentials)
        assert f"is at schema revision 0006, this jupyter_compute_servers at {head}" in str(
            refused.value
        )
        assert "The control plane migrates it at its start" in str(refused.value)
    finally:
        with owner.transaction() as db:
            db.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        owner.close()


def test_who_is_an_admin_is_the_control_planes_one_rule(hub: Hub) -> None:
    # carol is named in the user servers' team_admin_users, which the control plane does not
    # know: that copy is ignored (with a warning), so her server does not take her for one.
    assert hub.call("carol", "GET", "/team").json()["user"]["admin"] is False
    refused = hub.call(
        "carol", "POST", "/hosts", body={"name": "h", "hostname": "10.0.0.2", "username": "u"}
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["field"] == "user"
    assert "--admin-user or --admin-group" in refused.json()["message"]
    # The control plane answers each user who they are to the team (root: by --admin-group),
    # and each user's server takes them for what it says.
    answers = {}
    for user, admin in (("bob", False), (ADMIN, True), ("carol", False)):
        me = requests.get(
            f"{hub.url}/services/{SERVICE}/api/me",
            headers={"Authorization": f"token {hub.service_token(user)}"},
            timeout=30,
        )
        assert me.status_code == 200, me.text
        answers[user] = me.json()
        assert answers[user]["name"] == user and answers[user]["admin"] is admin
        assert hub.call(user, "GET", "/team").json()["user"]["admin"] is admin
    assert ADMIN_GROUP in answers[ADMIN]["groups"] and answers["bob"]["groups"] == []
    assert requests.get(f"{hub.url}/services/{SERVICE}/api/me", timeout=30).status_code in (
        401,
        403,
    )


def test_an_unreachable_control_plane_makes_nobody_an_admin_and_says_why() -> None:
    # A control plane that is not there (a port nobody listens on): fail closed.
    client = ControlPlaneClient(f"http://127.0.0.1:{free_port()}/services/{SERVICE}/", "t")
    source = OwnerAdmin(client, ttl=3600, retry=0)
    source.admin = True  # (as a former answer said)
    team = Team(enabled=True, owner="root", admin_source=source)
    asyncio.run(team.refresh_admin())
    assert source.admin is False
    assert "Cannot reach the control plane" in source.error
    model = {"name": "root", "admin": True, "groups": [ADMIN_GROUP]}
    assert team.identity(SimpleNamespace(hub_user=model)).admin is False
    assert "could not say whether you are one" in team.who_may_administer()
    assert "Cannot reach the control plane" in team.who_may_administer()
    # A visitor the Hub says is a Hub admin stays one (the owner's token cannot ask for them).
    visitor = {"name": "ada", "admin": True}
    assert team.identity(SimpleNamespace(hub_user=visitor)).admin is True


def test_the_user_servers_copy_of_the_admin_rule_is_ignored_with_a_warning(caplog) -> None:
    settings = ComputeServersSettings(
        team_mode=True,
        control_plane_url="http://127.0.0.1:9/services/compute-control/",
        team_admin_users=["carol"],
    )
    logger = logging.getLogger("tests.admin_rule")
    with caplog.at_level(logging.WARNING, logger="tests.admin_rule"):
        source = team_admin_source(
            settings, ControlPlaneClient(settings.control_plane_url, "t"), logger
        )
    assert isinstance(source, OwnerAdmin)
    assert "team_admin_users and team_admin_groups are ignored" in caplog.text
    # Without a control plane there is no other rule: the settings are the rule.
    assert team_admin_source(ComputeServersSettings(team_mode=True), None, logger) is None


@pytest.mark.timeout(300)
def test_an_admins_tested_mark_is_every_users_and_only_admins_may_mark(hub: Hub) -> None:
    image, tag = "scipy", "2025-03-14"  # (untested in the built-in catalogue)

    def shown(user: str) -> bool:
        images = hub.call(user, "GET", "/images").json()["images"]
        return any(i["id"] == image and any(v["tag"] == tag for v in i["versions"]) for i in images)

    assert not shown("bob")
    # Bob may not mark it: his server says so and what to do ...
    refused = hub.call("bob", "POST", "/images/tested", body={"image": image, "tag": tag})
    assert refused.status_code == 403, refused.text
    assert refused.json()["field"] == "user"
    assert refused.json()["message"].startswith("Only a compute servers admin may mark images")
    assert "ask one" in refused.json()["message"]
    # ... and so does PostgreSQL to his login, whatever the SQL.
    with _connect(_issued(hub, "bob")) as sql:
        for statement in (
            "INSERT INTO image_marks (image_id, tag, marked_by, marked_at) "
            "VALUES ('scipy', '2025-03-14', 'bob', 0)",
            "DELETE FROM image_marks",
            "UPDATE image_marks SET marked_by = 'bob'",
        ):
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                sql.execute(statement)
    assert not shown("bob")

    # The admin marks it in their own server: bob's shows it at its next read, no reload.
    marked = hub.call(ADMIN, "POST", "/images/tested", body={"image": image, "tag": tag})
    assert marked.status_code == 200, marked.text
    assert marked.json() == {"image": image, "tag": tag, "tested": True}
    assert shown("bob") and shown("alice")
    with _connect(_issued(hub, "bob")) as sql:
        assert sql.execute("SELECT image_id, tag, marked_by FROM image_marks").fetchall() == [
            (image, tag, ADMIN)
        ]
    # Bad input: the field named.
    for body, field in (
        ({"image": "nope", "tag": tag}, "image"),
        ({"image": image, "tag": "nope"}, "tag"),
        ({"image": image, "tag": tag, "tested": "yes"}, "tested"),
        ({"image": image}, "tag"),
        ({"image": image, "tag": tag, "by": "x"}, "by"),
    ):
        bad = hub.call(ADMIN, "POST", "/images/tested", body=body)
        assert bad.status_code == 400 and bad.json()["field"] == field, (body, bad.text)
    # Taken back: gone for everyone.
    unmarked = hub.call(
        ADMIN, "POST", "/images/tested", body={"image": image, "tag": tag, "tested": False}
    )
    assert unmarked.json()["tested"] is False
    assert not shown("bob")


@pytest.mark.timeout(600)
def test_a_users_login_reads_its_own_rows_and_of_others_only_the_usage_views(hub: Hub) -> None:
    # Bob's server, started and stopped (its state history), and, written by the owner as
    # his server's process would have: a slice of a shared host (its token a secret), sync
    # settings, a queue entry of a second server, a state change whose reason names a host.
    hers = hub.call("alice", "POST", "/servers", body={"name": "alice-reads"}).json()["id"]
    theirs = hub.call("bob", "POST", "/servers", body={"name": "bob-secret-name"}).json()["id"]
    waiting = hub.call("bob", "POST", "/servers", body={"name": "bob-waiting"}).json()["id"]
    assert hub.call("bob", "POST", f"/servers/{theirs}/actions/start").status_code == 202
    wait_state(hub, "bob", theirs, "running")
    owner = Database(hub.db_url, migrate=False)
    try:
        host = HostStore(owner, clock=time.time).create(
            name="reads-host", hostname="10.0.0.2", port=22, username="u"
        )
        with owner.transaction() as db:
            db.execute(
                text(
                    "INSERT INTO host_slices (server_id, host_id, cpu, memory_gb, gpu_uuids, "
                    "token, allocated, unix_user) VALUES (:s, :h, 2, 3.5, '[\"GPU-1\"]', "
                    "'slice-secret-token', 1, 'bob')"
                ),
                {"s": theirs, "h": host.id},
            )
            db.execute(
                text("INSERT INTO sync_settings (server_id, settings) VALUES (:s, '{}')"),
                {"s": theirs},
            )
            db.execute(
                text(
                    "INSERT INTO gpu_queue (server_id, host_id, requested, place) "
                    "VALUES (:s, :h, 5, 5)"
                ),
                {"s": waiting, "h": host.id},
            )
            db.execute(
                text(
                    "INSERT INTO state_history (server_id, at, state, reason, owner) "
                    "VALUES (:s, 2, 'error', 'cannot reach bob-private.example.org', 'bob')"
                ),
                {"s": theirs},
            )
    finally:
        owner.close()

    def rows(sql: psycopg.Connection, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        return sql.execute(statement, params).fetchall()

    def columns(sql: psycopg.Connection, view: str) -> list[str]:
        cursor = sql.execute(f"SELECT * FROM {view} LIMIT 0")
        return [c.name for c in cursor.description or ()]

    with _connect(_issued(hub, "alice")) as sql:
        # Her own rows: hers. Bob's: none of his servers, history, slices, sync records.
        assert hers in [r[0] for r in rows(sql, "SELECT id FROM servers")]
        assert rows(sql, "SELECT DISTINCT owner FROM servers") == [("alice",)]
        for statement in (
            "SELECT * FROM servers WHERE id IN (%s, %s)",
            "SELECT * FROM state_history WHERE server_id IN (%s, %s)",
            "SELECT * FROM host_slices WHERE server_id IN (%s, %s)",
            "SELECT * FROM sync_settings WHERE server_id IN (%s, %s)",
        ):
            assert rows(sql, statement, theirs, waiting) == [], statement
        assert rows(sql, "SELECT * FROM state_history WHERE owner = 'bob'") == []
        # A queue entry of his is there (the queue's order, caps), but no name nor config.
        assert rows(sql, "SELECT server_id FROM gpu_queue WHERE host_id = %s", host.id) == [
            (waiting,)
        ]
        assert (
            rows(
                sql,
                "SELECT s.name, s.config FROM gpu_queue q JOIN servers s ON s.id = q.server_id "
                "WHERE q.host_id = %s",
                host.id,
            )
            == []
        )

        # The views: every owner's rows, of the narrow columns only.
        assert columns(sql, "server_usage") == [
            "id",
            "owner",
            "cloud",
            "state",
            "daily_stop",
            "resources",
        ]
        assert columns(sql, "history_usage") == ["id", "server_id", "at", "state", "owner"]
        assert columns(sql, "slice_usage") == [
            "server_id",
            "host_id",
            "cpu",
            "memory_gb",
            "gpu_uuids",
            "gpu_fraction",
            "unix_user",
            "allocated",
            "owner",
        ]
        served = rows(sql, "SELECT * FROM server_usage WHERE id IN (%s, %s)", theirs, waiting)
        assert sorted((r[0], r[1], r[2], r[3]) for r in served) == [
            (theirs, "bob", "local", "running"),
            (waiting, "bob", "local", "deprovisioned"),
        ]
        assert {json.dumps(sorted(json.loads(r[5]))) for r in served} == {
            '["cpu", "gpu", "memory_gb"]'
        }
        history = rows(sql, "SELECT * FROM history_usage WHERE server_id = %s", theirs)
        assert {r[3] for r in history} >= {"starting", "running", "error"}
        assert {r[4] for r in history} == {"bob"}
        assert rows(sql, "SELECT * FROM slice_usage WHERE server_id = %s", theirs) == [
            (theirs, host.id, 2, 3.5, '["GPU-1"]', None, "bob", 1.0, "bob")
        ]
        # Nothing else of bob's is in them: no name, no reason, no token.
        everything = repr([rows(sql, f"SELECT * FROM {v}") for v in usage.VIEW_NAMES])
        for secret in ("bob-secret-name", "bob-private.example.org", "slice-secret-token"):
            assert secret not in everything
        # A configuration of her own that is no JSON (by hand: she may write her rows) breaks
        # no one's reads of the view: it gives no resources for that row.
        [(config,)] = rows(sql, "SELECT config FROM servers WHERE id = %s", hers)
        for bad in ("not json", "[1, 2]"):
            sql.execute("UPDATE servers SET config = %s WHERE id = %s", (bad, hers))
            assert rows(sql, "SELECT resources FROM server_usage WHERE id = %s", hers) == [(None,)]
            assert len(rows(sql, "SELECT resources FROM server_usage")) >= 3
        sql.execute("UPDATE servers SET config = %s WHERE id = %s", (config, hers))
        # Read only: the views PostgreSQL could write through (a single table's) refuse her
        # for want of the privilege; slice_usage (a join) is no view one may write through.
        for statement in (
            "UPDATE server_usage SET owner = 'alice'",
            "DELETE FROM server_usage",
            "DELETE FROM history_usage",
            "UPDATE history_usage SET owner = 'alice'",
            "INSERT INTO history_usage (server_id, at, state, owner) VALUES (1, 0, 'off', 'x')",
        ):
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                sql.execute(statement)
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="cannot"):
            sql.execute("DELETE FROM slice_usage")

    # An admin's login reads every row of the tables themselves.
    with _connect(_issued(hub, ADMIN)) as sql:
        assert rows(sql, "SELECT name FROM servers WHERE id = %s", theirs) == [("bob-secret-name",)]
        assert rows(sql, "SELECT token FROM host_slices WHERE server_id = %s", theirs) == [
            ("slice-secret-token",)
        ]
    # Bob's server is his as before (his own login reads it), and stops.
    assert hub.call("bob", "GET", f"/servers/{theirs}").json()["name"] == "bob-secret-name"
    with owner_transaction(hub) as db:
        db.execute(text("DELETE FROM host_slices WHERE server_id = :s"), {"s": theirs})
        db.execute(text("DELETE FROM gpu_queue WHERE server_id = :s"), {"s": waiting})
    assert hub.call("bob", "POST", f"/servers/{theirs}/actions/stop").status_code == 202
    wait_state(hub, "bob", theirs, "off")


@contextlib.contextmanager
def owner_transaction(hub: Hub) -> Iterator[Any]:
    database = Database(hub.db_url, migrate=False)
    try:
        with database.transaction() as db:
            yield db
    finally:
        database.close()
