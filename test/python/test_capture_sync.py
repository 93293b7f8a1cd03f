# Captures, syncs from captures and recovery points with real cp and rsync:
# on an XFS loop filesystem with reflink (as root) and on a filesystem
# without reflink (the unsupported path). The sync's "other host" is this one
# (the local-transport seam, see ocpdr_sync.py).
import datetime
import json
import os
import signal
import subprocess
import threading
import time

import ocpdr_points as rp


def roots(base):
    primary, dr = os.path.join(base, "primary"), os.path.join(base, "dr")
    os.makedirs(primary)
    os.makedirs(dr)
    return primary, dr


def capture(sync_mod, p, pvs):
    return sync_mod.capture_all(p, sync_mod.map_all(p, pvs, dr=False), False)


def sync(sync_mod, p, pvs):
    entries = sync_mod.map_all(p, pvs)
    sync_mod.run_sync(p, entries, False)
    return entries


def test_capture_then_sync_keeps_a_point_of_the_capture_not_of_the_live_dir(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    live = os.path.join(P, "ns-a", "pv-a")
    h.write(live + "/disk.img", os.urandom(1 << 20))
    h.write(live + "/sub/meta", "v1")
    os.symlink("disk.img", live + "/link")
    pv = h.pv("pv-a", live)
    p = params(P, D, job_id="job-7", checksum=True)
    c = capture(sync_mod, p, [pv])[0]
    assert c["status"] == "ok", c
    assert c["method"] == "reflink" and c["name"] == "pv-a" and c["rel"] == "ns-a/pv-a"
    assert os.path.dirname(c["path"]) == os.path.join(P, ".ocpdr-captures", "ns-a", "pv-a")
    assert os.stat(os.path.join(P, ".ocpdr-captures")).st_mode & 0o777 == 0o700
    assert os.path.basename(c["path"]) == rp.stamp(rp.parse_time(c["time"]))
    assert c["time"].endswith("Z") and len(c["time"]) == len("2026-12-02T11:00:00.123456Z")
    captured = h.tree(c["path"])
    assert captured == h.tree(live)
    # The guest writes on after the capture.
    h.write(live + "/sub/meta", "v2, written after the capture")
    h.write(live + "/new-file", "new")
    c.update(consistency="application-consistent", vms=["ns/vm1"], frozen=["ns/vm1"], consistency_reason="every VM frozen")
    p["captures"] = [c]
    e = sync(sync_mod, p, [pv])[0]
    assert e["status"] == "synced", e
    assert (e["source"], e["source_path"], e["consistency"], e["capture_time"]) == (
        "capture", c["path"], "application-consistent", c["time"])
    assert h.tree(e["dr_path"]) == captured
    assert os.readlink(os.path.join(e["dr_path"], "link")) == "disk.img"
    assert e["verify"]["primary_files"] == e["verify"]["dr_files"] == 3
    point = e["point"]
    assert point["time"] == c["time"] and point["consistency"] == "application-consistent"
    assert point["path"] == os.path.join(D, ".ocpdr-points", "ns-a", "pv-a", os.path.basename(c["path"]))
    assert h.tree(os.path.join(point["path"], "data")) == captured
    assert os.stat(os.path.join(D, ".ocpdr-points")).st_mode & 0o777 == 0o700
    with open(os.path.join(point["path"], "manifest.json")) as f:
        m = json.load(f)
    assert m["version"] == 1 and m["pv"] == "pv-a" and m["rel"] == "ns-a/pv-a" and m["time"] == c["time"]
    assert (m["consistency"], m["capture_method"], m["source"], m["job"]) == ("application-consistent", "reflink", "capture", "job-7")
    assert m["vms"] == ["ns/vm1"] and m["frozen"] == ["ns/vm1"] and m["consistency_reason"] == "every VM frozen"
    assert (m["files"], m["bytes"]) == (3, (1 << 20) + 2 + len("disk.img"))
    assert m["checksums"]["sub/meta"] == "sha256:" + captured["sub/meta"]
    assert rp.parse_time(m["created"]) >= rp.parse_time(c["time"]).replace(microsecond=0)
    assert os.listdir(os.path.dirname(point["path"])) == [os.path.basename(point["path"])]
    # The capture's fingerprint is the DR copy's (what push mode checks).
    assert rp.tree_fingerprint(c["path"]) == rp.tree_fingerprint(e["dr_path"])
    # A later sync of the live directory (no capture) is its own, inconsistent point.
    p["captures"] = []
    e2 = sync(sync_mod, p, [pv])[0]
    assert (e2["status"], e2["source"], e2["consistency"], e2["capture_time"]) == ("synced", "live", "inconsistent", None)
    assert e2["point"]["consistency"] == "inconsistent" and e2["point"]["time"] > c["time"]
    assert h.tree(os.path.join(point["path"], "data")) == captured
    assert h.tree(os.path.join(e2["point"]["path"], "data")) == h.tree(live)


def rsync_children():
    """rsync processes this test process started (and only those)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if comm == "rsync" and ppid == os.getpid():
            out.append(int(pid))
    return out


def test_rsync_killed_mid_transfer_leaves_the_previous_point_whole(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    live = os.path.join(P, "pv-k")
    h.write(live + "/disk.img", os.urandom(24 << 20))
    h.write(live + "/small", "one")
    pv = h.pv("pv-k", live)
    p = params(P, D)
    p["captures"] = capture(sync_mod, p, [pv])
    first = sync(sync_mod, p, [pv])[0]
    assert first["status"] == "synced" and "point" in first, first
    data1 = os.path.join(first["point"]["path"], "data")
    tree1 = h.tree(data1)
    with open(os.path.join(first["point"]["path"], "manifest.json")) as f:
        manifest1 = f.read()
    # New content, a new capture, and a slow sync that is killed half-way.
    with open(live + "/disk.img", "r+b") as f:
        f.write(os.urandom(24 << 20))
    h.write(live + "/small", "two")
    later = time.time() + 5   # rsync's quick check compares whole seconds
    os.utime(live + "/disk.img", (later, later))
    p.update(captures=capture(sync_mod, p, [pv]), bwlimit=2000)
    box = {}
    t = threading.Thread(target=lambda: box.update(e=sync(sync_mod, p, [pv])[0]))
    t.start()
    deadline = time.time() + 20
    while not rsync_children() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    killed = rsync_children()
    assert killed, "rsync did not start"
    for pid in killed:
        os.kill(pid, signal.SIGTERM)
    t.join(60)
    e = box["e"]
    assert e["status"] == "failed" and "rsync exit" in e["reason"], e
    assert "point" not in e
    # The working copy is torn; the earlier point is byte for byte what it was.
    assert h.tree(e["dr_path"]) != h.tree(p["captures"][0]["path"])
    assert h.tree(data1) == tree1
    with open(os.path.join(first["point"]["path"], "manifest.json")) as f:
        assert f.read() == manifest1
    cat = rp.list_points(D, "pv-k")
    assert [x["time"] for x in cat["points"]] == [first["point"]["time"]]
    assert cat["damaged"] == [] and cat["incomplete"] == []
    # The next sync completes and keeps the second point.
    p["bwlimit"] = 0
    again = sync(sync_mod, p, [pv])[0]
    assert again["status"] == "synced" and again["point"]["time"] == p["captures"][0]["time"]
    assert h.tree(os.path.join(again["point"]["path"], "data")) == h.tree(p["captures"][0]["path"])


def test_no_reflink_anywhere_falls_back_to_an_inconsistent_live_copy(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    live = os.path.join(P, "pv-u")
    h.write(live + "/disk.img", "data")
    pv = h.pv("pv-u", live)
    p = params(P, D)
    c = capture(sync_mod, p, [pv])[0]
    assert c["status"] == "unsupported" and c["path"] is None, c
    assert "no reflink" in c["reason"]
    assert os.listdir(os.path.join(P, ".ocpdr-captures", "pv-u")) == []
    p["captures"] = [c]
    e = sync(sync_mod, p, [pv])[0]
    assert e["status"] == "synced", e
    assert (e["source"], e["consistency"], e["capture_time"], e["capture_status"]) == ("live", "inconsistent", None, "unsupported")
    assert e["point_error"] == rp.NO_REFLINK and rp.NO_REFLINK in e["warning"]
    assert "point" not in e
    assert h.tree(e["dr_path"]) == h.tree(live)
    assert not os.path.exists(os.path.join(D, ".ocpdr-points", "pv-u")) or os.listdir(os.path.join(D, ".ocpdr-points", "pv-u")) == []


def test_primary_without_reflink_dr_with_it_keeps_inconsistent_points(noreflink, xfs, params, sync_mod, h):
    P = os.path.join(noreflink, "primary")
    D = os.path.join(xfs, "dr")
    os.makedirs(D)
    live = os.path.join(P, "pv-m")
    h.write(live + "/disk.img", "data")
    pv = h.pv("pv-m", live)
    p = params(P, D)
    p["captures"] = capture(sync_mod, p, [pv])
    assert p["captures"][0]["status"] == "unsupported"
    e = sync(sync_mod, p, [pv])[0]
    assert e["status"] == "synced" and e["source"] == "live"
    assert e["point"]["consistency"] == "inconsistent"


def test_capture_method_command(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    live = os.path.join(P, "pv-c")
    h.write(live + "/disk.img", "data")
    pv = h.pv("pv-c", live)
    p = params(P, D, capture_method="command", capture_command=["cp", "-a", "--", "{src}", "{dst}"])
    c = capture(sync_mod, p, [pv])[0]
    assert c["status"] == "ok" and c["method"] == "command", c
    assert h.tree(c["path"]) == h.tree(live)
    for argv, why in ((["false"], "capture command false"), (["true"], "did not create")):
        p["capture_command"] = argv
        c = capture(sync_mod, p, [pv])[0]
        assert c["status"] == "failed" and why in c["reason"], c
    assert rp.unfinished(os.listdir(os.path.join(P, ".ocpdr-captures", "pv-c"))) == []


def test_capture_timeout_stops_a_slow_capture(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    pvs = []
    for n in ("pv-s1", "pv-s2"):
        h.write(os.path.join(P, n, "disk.img"), "data")
        pvs.append(h.pv(n, os.path.join(P, n)))
    p = params(P, D, capture_method="command", capture_timeout=1, capture_command=["sleep", "5"])
    start = time.time()
    caps = capture(sync_mod, p, pvs)
    assert time.time() - start < 4
    # The captures of a batch run at once: each is cut at the shared deadline
    # (one sequential capture would instead find the budget used up).
    for c in caps:
        assert c["status"] == "failed" and ("timed out" in c["reason"] or "capture_timeout" in c["reason"]), caps
    assert [c["path"] for c in caps] == [None, None]


def test_capture_check_mode_and_refusals_write_nothing(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    h.write(os.path.join(P, "pv-x", "disk.img"), "data")
    os.symlink("/etc", os.path.join(P, "escape"))
    p = params(P, D)
    pvs = [h.pv("pv-x", os.path.join(P, "pv-x")), h.pv("gone", os.path.join(P, "gone")),
           h.pv("escape", os.path.join(P, "escape")), h.pv("dots", P + "/../x")]
    caps = sync_mod.capture_all(p, sync_mod.map_all(p, pvs, dr=False), True)
    assert [c["status"] for c in caps] == ["skipped", "refused", "refused", "refused"], caps
    assert "check mode" in caps[0]["reason"] and "missing" in caps[1]["reason"]
    assert "outside the export root" in caps[2]["reason"] and "'..'" in caps[3]["reason"]
    assert not os.path.exists(os.path.join(P, ".ocpdr-captures"))
    p["capture_method"] = "none"
    c = capture(sync_mod, p, pvs[:1])[0]
    assert c["status"] == "skipped" and "capture_method none" in c["reason"]


def test_sync_refuses_a_capture_record_that_is_not_a_capture_of_the_pv(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    live = os.path.join(P, "pv-r")
    h.write(live + "/disk.img", "data")
    h.write(os.path.join(P, "other", "secret"), "s")
    pv = h.pv("pv-r", live)
    p = params(P, D)
    good_time = "2026-12-02T11:00:00.123456Z"
    base = os.path.join(P, ".ocpdr-captures", "pv-r")
    for path, t, why in (
        (os.path.join(P, "other"), good_time, "not a capture of this PV"),
        ("/etc", good_time, "not a capture of this PV"),
        (base + "/../../other", good_time, "not a capture of this PV"),
        (os.path.join(P, ".ocpdr-captures", "other", "20261202T110000.123456Z"), good_time, "not a capture of this PV"),
        (base + "/20261202T110000.123456Z", "2026-12-02T11:00:01.123456Z", "does not match its path"),
        (base + "/20261202T110000.123456Z", "yesterday", "not an RFC 3339 time"),
    ):
        p["captures"] = [{"rel": "pv-r", "status": "ok", "path": path, "time": t}]
        e = sync(sync_mod, p, [pv])[0]
        assert e["status"] == "refused" and why in e["reason"], (path, e)
    assert not os.path.exists(os.path.join(D, "pv-r", "secret"))
    # A capture released before the sync read it: the live directory, labelled so.
    p["captures"] = [{"rel": "pv-r", "status": "ok", "path": base + "/20261202T110000.123456Z", "time": good_time}]
    e = sync(sync_mod, p, [pv])[0]
    assert e["status"] == "synced" and e["source"] == "live" and "is gone" in e["warning"], e


def test_capture_release_keeps_the_newest(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    live = os.path.join(P, "pv-l")
    h.write(live + "/disk.img", "data")
    pv = h.pv("pv-l", live)
    p = params(P, D, capture_keep=1)
    caps = [capture(sync_mod, p, [pv])[0] for _ in range(3)]
    base = os.path.join(P, ".ocpdr-captures", "pv-l")
    os.mkdir(os.path.join(base, "20200101T000000.000000Z.partial"))
    os.mkdir(os.path.join(base, "not-a-capture"))
    outside = os.path.join(P, "pv-l-keep")
    h.write(outside + "/f", "x")
    # A sync reading a capture (shared lock) holds the release off.
    reader = sync_mod.Lock(os.path.join(P, ".ocpdr-captures"), "pv-l", 1, shared=True)
    with reader:
        r = sync_mod.release_all(p, sync_mod.map_all(p, [pv], dr=False), False)[0]
    assert r["status"] == "held" and len(rp.stamped(os.listdir(base))) == 3, r
    r = sync_mod.release_all(p, sync_mod.map_all(p, [pv], dr=False), True)[0]
    assert r["status"] == "released" and len(r["removed"]) == 3 and len(os.listdir(base)) == 5
    r = sync_mod.release_all(p, sync_mod.map_all(p, [pv], dr=False), False)[0]
    assert r["status"] == "released", r
    assert r["kept"] == [os.path.basename(caps[-1]["path"])]
    assert sorted(r["removed"]) == sorted([os.path.basename(c["path"]) for c in caps[:2]] + ["20200101T000000.000000Z.partial"])
    assert sorted(os.listdir(base)) == sorted([os.path.basename(caps[-1]["path"]), "not-a-capture"])
    assert os.path.exists(live + "/disk.img") and os.path.exists(outside + "/f")


def make_dr_dir(h, D, rel, content):
    d = os.path.join(D, rel)
    h.write(d + "/disk.img", content)
    return d


def keep(D, rel, d, when, level="crash-consistent"):
    return rp.make_point(D, rel, d, {"pv": rel, "time": when, "consistency": level, "source": "capture"})


def test_points_listing_reports_damaged_points_and_never_raises(xfs, params, sync_mod, h):
    _, D = roots(xfs)
    d = make_dr_dir(h, D, "ns/pv-d", "v")
    times = ["2026-12-01T10:00:00.000000Z", "2026-12-02T10:00:00.000000Z", "2026-12-03T10:00:00.000000Z",
             "2026-12-04T10:00:00.000000Z"]
    made = [keep(D, "ns/pv-d", d, t) for t in times]
    with open(os.path.join(made[1]["path"], "manifest.json"), "w") as f:
        f.write("{not json")
    os.rename(os.path.join(made[2]["path"], "data"), os.path.join(made[2]["path"], "gone"))
    with open(os.path.join(made[3]["path"], "manifest.json"), "w") as f:
        json.dump({"version": 1, "time": times[0], "consistency": "crash-consistent", "rel": "ns/pv-d"}, f)
    os.mkdir(os.path.join(os.path.dirname(made[0]["path"]), "20261205T000000.000000Z.partial"))
    p = params(os.path.join(xfs, "primary"), D)
    for entries in (sync_mod.catalogue_entries(p, []),
                    sync_mod.catalogue_entries(p, [h.pv("pv-d", os.path.join(xfs, "primary", "ns", "pv-d"))])):
        cat = sync_mod.list_catalogue(p, entries)
        assert len(cat) == 1 and cat[0]["status"] == "listed" and cat[0]["rel"] == "ns/pv-d", cat
        assert cat[0]["name"] in ("pv-d", "ns/pv-d")
        assert [x["time"] for x in cat[0]["points"]] == times[:1]
        reasons = [x["reason"] for x in cat[0]["damaged"]]
        assert len(reasons) == 3
        assert "unreadable" in reasons[0] and "data directory missing" in reasons[1] and "does not match" in reasons[2]
        assert cat[0]["incomplete"] == ["20261205T000000.000000Z.partial"]
        assert rp.select_point(cat[0]["points"], "latest")["time"] == times[0]
    # Retention deletes neither damaged points nor the newest whole one.
    res = sync_mod.prune_all(p, ["ns/pv-d"], False)[0]
    assert res["status"] == "pruned" and res["kept"] == 1 and res["removed"] == 0 and len(res["damaged"]) == 3
    assert all(os.path.isdir(m["path"]) for m in made)
    assert res["incomplete_removed"] == ["20261205T000000.000000Z.partial"]


def test_points_prune_applies_retention_under_the_lock(xfs, params, sync_mod, h):
    _, D = roots(xfs)
    d = make_dr_dir(h, D, "pv-p", "v")
    now = rp.utcnow()
    ages = [0.5, 2, 30, 31, 24 * 3 + 1, 24 * 20]   # hours
    made = [keep(D, "pv-p", d, rp.rfc3339(now - datetime.timedelta(hours=a))) for a in ages]
    p = params(os.path.join(xfs, "primary"), D, points_keep_all_hours=24, points_daily_days=7)
    lock = sync_mod.Lock(D, "pv-p", 1)
    with lock:
        held = sync_mod.prune_all(p, ["pv-p"], False)[0]
    assert held["status"] == "held" and all(os.path.isdir(m["path"]) for m in made)
    dry = sync_mod.prune_all(p, ["pv-p"], True)[0]
    assert all(os.path.isdir(m["path"]) for m in made)
    res = sync_mod.prune_all(p, ["pv-p"], False)[0]
    assert res == dict(dry, status="pruned")
    want_kept = rp.retention(made, now, 24, 7)[0]
    assert res["kept"] == len(want_kept) and res["removed"] == len(made) - len(want_kept) > 0
    assert sorted(os.listdir(os.path.join(D, ".ocpdr-points", "pv-p"))) == sorted(os.path.basename(m["path"]) for m in want_kept)
    # periodic-style: every PV of the catalogue.
    assert [r["rel"] for r in sync_mod.catalogue_retention(p, False)] == ["pv-p"]


def test_rewrite_restores_the_chosen_point(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    rel = "ns-f/pv-f"
    d = make_dr_dir(h, D, rel, "app-consistent state")
    t_app = "2026-12-02T10:00:00.000000Z"
    keep(D, rel, d, t_app, "application-consistent")
    h.write(d + "/disk.img", "crash-consistent state")
    t_crash = "2026-12-02T11:00:00.000000Z"
    keep(D, rel, d, t_crash)
    h.write(d + "/disk.img", "working copy, torn by an interrupted sync")
    pv = h.pv("pv-f", os.path.join(P, rel))
    p = params(P, D, dr_server="dr-nfs.example")

    def run(spec, check=False):
        p["recovery_point"] = spec
        entries, pvs, _ = sync_mod.rewrite(p, [pv], [], check)
        return entries[0], pvs

    def content():
        with open(d + "/disk.img") as f:
            return f.read()

    e, pvs = run("latest", check=True)
    assert (e["status"], e["point_time"], e["restored"]) == ("rewritten", t_crash, False) and len(pvs) == 1
    assert content() == "working copy, torn by an interrupted sync"
    e, pvs = run("2026-12-01T00:00:00Z")
    assert e["status"] == "failed" and "no recovery point at or before" in e["reason"] and pvs == [], e
    assert content() == "working copy, torn by an interrupted sync"
    e, pvs = run("latest")
    assert (e["status"], e["point_time"], e["point_consistency"], e["restored"]) == ("rewritten", t_crash, "crash-consistent", True)
    assert e["point"] == "%s (crash-consistent)" % t_crash and pvs[0]["spec"]["nfs"]["server"] == "dr-nfs.example"
    assert content() == "crash-consistent state"
    with open(os.path.join(e["archive_path"], "disk.img")) as f:
        assert f.read() == "working copy, torn by an interrupted sync"
    assert os.path.basename(e["archive_path"]).startswith("archived-pv-f-")
    e, _ = run("latest-application-consistent")
    assert e["status"] == "rewritten", e
    assert e["point_time"] == t_app and e["point_consistency"] == "application-consistent" and content() == "app-consistent state"
    e, _ = run("2026-12-02T10:30:00+00:00")
    assert e["point_time"] == t_app
    assert not [n for n in os.listdir(os.path.dirname(d)) if n.startswith(rp.RESTORE_PREFIX)]
    # The points themselves are untouched by restores.
    for t, want in ((t_app, "app-consistent state"), (t_crash, "crash-consistent state")):
        with open(os.path.join(D, ".ocpdr-points", rel, rp.stamp(rp.parse_time(t)), "data", "disk.img")) as f:
            assert f.read() == want
    p["use_points"] = False
    e, _ = run("latest")
    assert e["status"] == "rewritten" and "use_points false" in e["point"] and "restored" not in e


def test_rewrite_without_points(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    d = make_dr_dir(h, D, "pv-n", "working")
    p = params(P, D, dr_server="dr-nfs.example")
    pv = h.pv("pv-n", os.path.join(P, "pv-n"))
    entries, pvs, _ = sync_mod.rewrite(p, [pv], [], False)
    assert entries[0]["status"] == "rewritten" and entries[0]["point"] == rp.WORKING_COPY and len(pvs) == 1
    assert h.tree(d) == {"disk.img": h.tree(d)["disk.img"]}
    p["recovery_point"] = "latest-application-consistent"
    entries, pvs, _ = sync_mod.rewrite(p, [pv], [], False)
    assert entries[0]["status"] == "failed" and "no application-consistent recovery point" in entries[0]["reason"] and pvs == []


def test_push_then_point_at_dr_checks_the_copy_is_the_captures(xfs, params, sync_mod, h):
    P, D = roots(xfs)
    live = os.path.join(P, "pv-push")
    h.write(live + "/disk.img", os.urandom(4096))
    os.symlink("disk.img", live + "/link")
    h.write(live + "/sub/f", "x")
    pv = h.pv("pv-push", live)
    prim = params(P, D, direction="push")
    prim["captures"] = capture(sync_mod, prim, [pv])
    res = sync(sync_mod, prim, [pv])
    e = res[0]
    assert e["status"] == "synced" and e["source"] == "capture" and e["source_tree"].startswith("sha256:"), e
    assert "point" not in e
    results = json.loads(json.dumps(res))   # as Ansible hands them over
    dr = params(P, D, job_id="push-job")
    out = sync_mod.points_after_push(dr, results, False)[0]
    assert out["point"]["time"] == prim["captures"][0]["time"], out
    assert h.tree(os.path.join(out["point"]["path"], "data")) == h.tree(prim["captures"][0]["path"])
    # Another sync changed the DR copy since: no point under this capture's name.
    h.write(e["dr_path"] + "/sub/f", "changed by another sync")
    os.utime(e["dr_path"] + "/sub/f", (1, 1))
    results = json.loads(json.dumps(res))
    results[0]["capture_time"] = rp.rfc3339(rp.utcnow())
    out = sync_mod.points_after_push(dr, results, False)[0]
    assert "does not match capture" in out["point_error"] and "point" not in out, out
    # A result naming a path elsewhere is refused.
    bad = dict(json.loads(json.dumps(res))[0], dr_path="/etc", rel="../etc")
    out = sync_mod.points_after_push(dr, [bad], False)[0]
    assert "point_error" in out and "point" not in out


def test_tree_fingerprint_matches_after_rsync_and_skips_reserved_names(noreflink, params, sync_mod, h):
    P, D = roots(noreflink)
    src = os.path.join(P, "src")
    h.write(src + "/a/b/c", "c")
    h.write(src + "/.ocpdr-local", "excluded by rsync")
    os.makedirs(src + "/archived-x-20261202T110000Z")
    os.symlink("a/b/c", src + "/l")
    os.link(src + "/a/b/c", src + "/hard")
    p = params(P, D)
    dst = os.path.join(D, "dst")
    assert subprocess.run(sync_mod.rsync_argv(p, src, dst, False), stdout=subprocess.DEVNULL).returncode == 0
    assert not os.path.exists(dst + "/.ocpdr-local")
    assert rp.tree_fingerprint(src) == rp.tree_fingerprint(dst)
    h.write(dst + "/a/b/c", "C")
    assert rp.tree_fingerprint(src) != rp.tree_fingerprint(dst)
