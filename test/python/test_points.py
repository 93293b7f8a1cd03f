# Pure functions of ocpdr_points: times, retention, point selection, command argv.
import datetime

import pytest

import ocpdr_points as rp

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 10, 12, 0, 0, tzinfo=UTC)


def t(s):
    return rp.parse_time(s)


def pts(*times, **kw):
    levels = kw.get("levels") or {}
    return [{"time": x, "consistency": levels.get(x, "crash-consistent"), "path": "/p/" + x} for x in times]


def test_stamp_and_rfc3339_round_trip():
    dt = datetime.datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=UTC)
    assert rp.stamp(dt) == "20261202T110000.123456Z"
    assert rp.rfc3339(dt) == "2026-12-02T11:00:00.123456Z"
    assert rp.stamp_time("20261202T110000.123456Z") == dt
    assert rp.parse_time("2026-12-02T11:00:00.123456Z") == dt
    assert rp.STAMP_RE.match(rp.stamp(rp.utcnow()))


@pytest.mark.parametrize("text,want", [
    ("2026-12-02T11:00:00Z", datetime.datetime(2026, 12, 2, 11, 0, tzinfo=UTC)),
    ("2026-12-02T12:00:00+01:00", datetime.datetime(2026, 12, 2, 11, 0, tzinfo=UTC)),
    ("2026-12-02T06:30:00.5-04:30", datetime.datetime(2026, 12, 2, 11, 0, 0, 500000, tzinfo=UTC)),
    ("2026-12-02t11:00:00.1234567z", datetime.datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=UTC)),
])
def test_parse_time(text, want):
    assert rp.parse_time(text) == want


@pytest.mark.parametrize("text", ["", "latest", "2026-12-02", "2026-12-02T11:00:00", "2026-12-02T11:00Z", None, 5])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        rp.parse_time(text)


# retention(points, now, keep_all_hours, daily_days): (point times, hours,
# days) -> the times kept. NOW is 2026-12-10 12:00Z.
RETENTION = [
    ("no points", [], 24, 7, []),
    ("one old point is the newest: kept", ["2026-01-01T00:00:00Z"], 24, 7, ["2026-01-01T00:00:00Z"]),
    ("all within keep_all", ["2026-12-10T11:00:00Z", "2026-12-10T01:00:00Z", "2026-12-09T13:00:00Z"], 24, 0,
     ["2026-12-10T11:00:00Z", "2026-12-10T01:00:00Z", "2026-12-09T13:00:00Z"]),
    ("exactly keep_all_hours old is not newer than it", ["2026-12-10T11:00:00Z", "2026-12-09T12:00:00Z"], 24, 0,
     ["2026-12-10T11:00:00Z"]),
    ("dailies: newest of each UTC day, today and 6 days back",
     ["2026-12-10T11:00:00Z", "2026-12-08T23:59:59.999999Z", "2026-12-08T00:00:00Z", "2026-12-04T10:00:00Z",
      "2026-12-04T09:00:00Z", "2026-12-03T23:00:00Z"], 0, 7,
     ["2026-12-10T11:00:00Z", "2026-12-08T23:59:59.999999Z", "2026-12-04T10:00:00Z"]),
    ("keep_all and dailies together",
     ["2026-12-10T11:00:00Z", "2026-12-10T10:00:00Z", "2026-12-09T20:00:00Z", "2026-12-09T08:00:00Z",
      "2026-12-08T07:00:00Z", "2026-12-08T06:00:00Z", "2026-12-01T00:00:00Z"], 24, 7,
     ["2026-12-10T11:00:00Z", "2026-12-10T10:00:00Z", "2026-12-09T20:00:00Z", "2026-12-08T07:00:00Z"]),
    ("nothing configured: only the newest", ["2026-12-10T11:00:00Z", "2026-12-10T10:00:00Z"], 0, 0,
     ["2026-12-10T11:00:00Z"]),
    ("a point from the future (clock skew) is kept", ["2026-12-11T00:00:00Z", "2026-12-01T00:00:00Z"], 24, 0,
     ["2026-12-11T00:00:00Z"]),
    ("order does not matter", ["2026-12-01T00:00:00Z", "2026-12-10T11:59:00Z", "2026-11-01T00:00:00Z"], 1, 0,
     ["2026-12-10T11:59:00Z"]),
    ("offsets count in UTC days (both on 4 December UTC)", ["2026-12-05T01:00:00+02:00", "2026-12-04T22:00:00Z"], 0, 7,
     ["2026-12-05T01:00:00+02:00"]),
    ("daily_days 1 is today only", ["2026-12-10T00:00:01Z", "2026-12-10T00:00:00Z", "2026-12-09T23:59:59Z"], 0, 1,
     ["2026-12-10T00:00:01Z"]),
    ("daily_days 2 reaches yesterday", ["2026-12-10T00:00:01Z", "2026-12-09T23:59:59Z", "2026-12-08T23:59:59Z"], 0, 2,
     ["2026-12-10T00:00:01Z", "2026-12-09T23:59:59Z"]),
]


@pytest.mark.parametrize("why,times,hours,days,want", RETENTION, ids=[r[0] for r in RETENTION])
def test_retention(why, times, hours, days, want):
    points = pts(*times)
    keep, remove = rp.retention(points, NOW, hours, days)
    assert [p["time"] for p in keep] == want
    assert sorted(p["time"] for p in keep + remove) == sorted(times)
    assert not set(id(p) for p in keep) & set(id(p) for p in remove)


LEVELS = {"2026-12-10T09:00:00Z": "application-consistent", "2026-12-09T09:00:00Z": "application-consistent",
          "2026-12-10T11:00:00Z": "inconsistent"}
CATALOGUE = ["2026-12-08T09:00:00Z", "2026-12-09T09:00:00Z", "2026-12-10T09:00:00Z", "2026-12-10T10:00:00Z",
             "2026-12-10T11:00:00Z"]
SELECT = [
    ("latest", "latest", CATALOGUE, "2026-12-10T11:00:00Z"),
    ("latest, unsorted", "latest", list(reversed(CATALOGUE)), "2026-12-10T11:00:00Z"),
    ("latest application-consistent", "latest-application-consistent", CATALOGUE, "2026-12-10T09:00:00Z"),
    ("a time between points", "2026-12-10T09:30:00Z", CATALOGUE, "2026-12-10T09:00:00Z"),
    ("exactly a point's time", "2026-12-10T10:00:00Z", CATALOGUE, "2026-12-10T10:00:00Z"),
    ("a time with an offset", "2026-12-10T11:30:00+01:00", CATALOGUE, "2026-12-10T10:00:00Z"),
    ("after every point", "2030-01-01T00:00:00Z", CATALOGUE, "2026-12-10T11:00:00Z"),
    ("before every point", "2026-12-01T00:00:00Z", CATALOGUE, None),
    ("no points", "latest", [], None),
    ("no application-consistent point", "latest-application-consistent", ["2026-12-08T09:00:00Z"], None),
]


@pytest.mark.parametrize("why,spec,times,want", SELECT, ids=[s[0] for s in SELECT])
def test_select_point(why, spec, times, want):
    got = rp.select_point(pts(*times, levels=LEVELS), spec)
    assert (got and got["time"]) == want


@pytest.mark.parametrize("spec", ["newest", "", "2026-12-10", "latest-crash-consistent"])
def test_select_point_refuses_a_bad_spec(spec):
    with pytest.raises(ValueError):
        rp.select_point(pts(*CATALOGUE), spec)


def test_command_argv_replaces_placeholders_only():
    argv = rp.command_argv(["snap", "--from={src}", "{dst}", "{name}/{rel}", "{other}", "{{src}}"],
                           {"src": "/s", "dst": "/d", "name": "pv1", "rel": "a/b"})
    assert argv == ["snap", "--from=/s", "/d", "pv1/a/b", "{other}", "{/s}"]
    for bad in ([], None, ["ok", 3]):
        with pytest.raises(rp.PointError):
            rp.command_argv(bad, {"src": "", "dst": "", "name": "", "rel": ""})


@pytest.mark.parametrize("text,want", [
    ("cp: failed to clone 'b/./f' from 'a/./f': Operation not supported", True),
    ("cp: failed to clone 'b/f' from 'a/f': Invalid argument", True),
    ("cp: failed to clone 'b/f' from 'a/f': Invalid cross-device link", True),
    ("cp: cannot create regular file 'b/f': No space left on device", False),
    ("cp: cannot stat 'a/.': No such file or directory", False),
])
def test_unsupported_messages(text, want):
    assert rp.is_unsupported(text) is want


def test_unfinished_names():
    names = ["20261202T110000.000001Z", "20261202T110000.000002Z.partial", "20261202T110000.000003Z.deleting",
             "20261202T110000.000004Z.partial.deleting", "x.partial", "b", "20261202T110000Z.partial"]
    assert rp.unfinished(names) == ["20261202T110000.000002Z.partial", "20261202T110000.000003Z.deleting",
                                    "20261202T110000.000004Z.partial.deleting"]
    assert rp.stamped(names) == ["20261202T110000.000001Z"]
