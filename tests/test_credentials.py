"""Broker credentials: Mosquitto's hash, the ACL, credentials.csv, modes, reruns."""

from __future__ import annotations

import base64
import csv
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from anju.devices.credentials import (
    PIPELINE_USER,
    hash_password,
    principals,
    render_acl,
    verify_password,
    write_credentials,
)
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.kinds import KINDS

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


# the sample site: 2 estates of one building, one device of every kind in each
DEVICES = 2 * len(KINDS)
USERS = 1 + DEVICES + 2  # the pipeline, the devices, a gateway per building


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return load_site(write_site(tmp_path / "site", estates=2, buildings=1, per_building=1))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_hash_is_mosquitto_2_pbkdf2() -> None:
    # A vector made with mosquitto_passwd 2.0.11 (-H sha512-pbkdf2, its default).
    mosq = ("$7$101$agyTIdk0IZcs6HXR$AGdilq0/LqRDYzRVxlss6eiTW+eyI+lATMM1cyoO0dFyd+dvrzTjX7"
            "UxHeKECTeaDp9P9EMvCvivghkOkqTaxw==")
    assert verify_password("s3cret", mosq)
    assert not verify_password("s3cret!", mosq)
    salt = base64.b64decode("agyTIdk0IZcs6HXR")
    assert hash_password("s3cret", salt=salt) == mosq
    h = hash_password("pw")
    tag, iterations, salt_b64, digest_b64 = h.split("$")[1:]
    assert (tag, iterations) == ("7", "101")
    assert len(base64.b64decode(salt_b64)) == 12 and len(base64.b64decode(digest_b64)) == 64
    assert verify_password("pw", h) and hash_password("pw") != h  # salted
    assert not verify_password("pw", "$7$nonsense") and not verify_password("pw", "plain")


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd not installed")
def test_agrees_with_the_real_mosquitto_passwd(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("")
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), "alice", "Zx-9_q"], check=True,
                   capture_output=True, timeout=30)
    user, hashed = pw.read_text().strip().split(":", 1)
    assert user == "alice" and hashed.startswith("$7$101$")
    assert verify_password("Zx-9_q", hashed) and not verify_password("Zx-9_Q", hashed)
    salt = base64.b64decode(hashed.split("$")[3])
    assert hash_password("Zx-9_q", salt=salt) == hashed


def test_principals_and_acl(site: Site) -> None:
    users = principals(site)
    assert users[0].username == PIPELINE_USER and users[0].read == ("anju/#",)
    assert users[0].write == ()
    by_name = {p.username: p for p in users}
    assert by_name["smoke-2"].write == ("anju/e2/b1/smoke/smoke-2",)
    assert by_name["camera-1"].write == ("anju/e1/b1/camera/camera-1",)
    assert by_name["gw-e2-b1"].role == "gateway"
    assert by_name["gw-e2-b1"].write == ("anju/e2/b1/batch/gw-e2-b1",)
    assert all(p.read == () for p in users[1:])  # nobody but the pipeline reads
    acl = render_acl(users)
    body = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert body[0] == f"user {PIPELINE_USER}"  # nothing before a user line: no anonymous
    assert "user smoke-2\ntopic write anju/e2/b1/smoke/smoke-2\n" in acl
    assert "user gw-e1-b1\ntopic write anju/e1/b1/batch/gw-e1-b1\n" in acl
    assert sum(line.startswith("topic read") for line in body) == 1
    assert sum(line.startswith("user ") for line in body) == len(users)


def test_write_credentials(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    report = write_credentials(site, out)
    assert report.by_role == {"pipeline": 1, "device": DEVICES, "gateway": 2}
    assert (report.users, report.new, report.kept, report.removed) == (USERS, USERS, 0, 0)
    for name in ("passwd", "acl", "credentials.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert not list(out.glob(".*tmp"))
    rows = read_csv(out / "credentials.csv")
    assert [r["username"] for r in rows] == [p.username for p in principals(site)]
    assert {r["role"] for r in rows} == {"pipeline", "device", "gateway"}
    passwords = [r["password"] for r in rows]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) == 32 and p.replace("-", "").replace("_", "").isalnum() for p in passwords)
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert set(hashes) == {r["username"] for r in rows}
    assert all(verify_password(r["password"], hashes[r["username"]]) for r in rows)
    # passwords never reach the ACL
    acl = (out / "acl").read_text()
    assert not any(p in acl for p in passwords)


def test_rerun_keeps_passwords_unless_rotate(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    write_credentials(site, out)
    first = {r["username"]: r["password"] for r in read_csv(out / "credentials.csv")}
    passwd_first = (out / "passwd").read_text()
    again = write_credentials(site, out)
    assert (again.new, again.kept) == (0, USERS)
    assert {r["username"]: r["password"] for r in read_csv(out / "credentials.csv")} == first
    assert (out / "passwd").read_text() == passwd_first  # valid hashes are kept as they are
    # a device leaves the registry, one joins: only those change
    devices = (site.root / "devices.csv").read_text().replace("smoke-2,", "smoke-9,")
    (site.root / "devices.csv").write_text(devices)
    changed = write_credentials(load_site(site.root), out)
    assert (changed.new, changed.kept, changed.removed) == (1, USERS - 1, 1)
    now = {r["username"]: r["password"] for r in read_csv(out / "credentials.csv")}
    assert "smoke-2" not in now and now["smoke-1"] == first["smoke-1"]
    rotated = write_credentials(load_site(site.root), out, rotate=True)
    assert (rotated.new, rotated.kept) == (USERS, 0)
    after = {r["username"]: r["password"] for r in read_csv(out / "credentials.csv")}
    assert all(after[u] != now[u] for u in after)


def test_pipeline_password_given(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    write_credentials(site, out, pipeline_password="from-the-env")
    rows = {r["username"]: r for r in read_csv(out / "credentials.csv")}
    assert rows[PIPELINE_USER]["password"] == "from-the-env"
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert verify_password("from-the-env", hashes[PIPELINE_USER])


def test_a_tampered_password_is_rehashed(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    write_credentials(site, out)
    text = (out / "credentials.csv").read_text()
    old = read_csv(out / "credentials.csv")[1]
    (out / "credentials.csv").write_text(text.replace(old["password"], "chosen-by-hand"))
    write_credentials(site, out)
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert verify_password("chosen-by-hand", hashes[old["username"]])


def test_group_readable_broker_files(site: Site, tmp_path: Path) -> None:
    """With the broker's group, what the broker reads is 0640 in that group and the
    directory lets the group in; the plaintext passwords stay the owner's."""
    import grp
    import os

    from anju.devices.broker import BrokerConfig

    group = grp.getgrgid(os.getgid()).gr_name  # a group that surely exists
    out = tmp_path / "creds"
    out.mkdir(mode=0o700)  # as an earlier version left it
    report = write_credentials(site, out, group=group, broker=BrokerConfig(
        listen="127.0.0.1:1884", persistence_dir=tmp_path / "nowhere"))
    assert report.files == ("passwd", "acl", "credentials.csv", "mosquitto.conf")
    for name in ("passwd", "acl", "mosquitto.conf"):
        st = (out / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, os.getgid()), name
    assert stat.S_IMODE((out / "credentials.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert any("persistence directory" in w for w in report.warnings)
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert "listener 1884 127.0.0.1" in conf and "allow_anonymous false" in conf
    assert f"persistence_location {tmp_path / 'nowhere'}/" in conf


def test_parse_listen() -> None:
    from anju.devices.broker import parse_listen
    from anju.errors import AnjuError

    assert parse_listen("1883") == (None, 1883)
    assert parse_listen("127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_listen("[::1]:1884") == ("::1", 1884)
    for bad in ("", "x", "0", "70000", ":1883", "h:p"):
        with pytest.raises(AnjuError):
            parse_listen(bad)
