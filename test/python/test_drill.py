# The drill's DR-side steps (ocpdr_sync modes drill_prepare and
# drill_teardown): the chosen recovery point of each PV reflink-cloned to
# <dr_export_root>/.ocpdr-drills/<id>/<rel>, drill PVs/PVCs returned, the
# working copy and the points untouched, and a sync during the drill
# changing neither the drill's data nor losing its own. XFS reflink fixture.
import json
import os

import pytest

import ocpdr_points as rp

T1, T2 = "2026-12-01T10:00:00.000000Z", "2026-12-02T10:00:00.000000Z"


def claimed(h, name, path, ns="vms", claim=None):
    pv = h.pv(name, path)
    pv["spec"].update(capacity={"storage": "5Gi"}, accessModes=["ReadWriteMany"], storageClassName="nfs",
                      claimRef={"kind": "PersistentVolumeClaim", "namespace": ns, "name": claim or name + "-pvc", "uid": "u1"})
    return pv


def make_site(xfs, h, rel="vms/disk-a"):
    """A primary root, a DR root whose rel has points at T1 ("one") and T2
    ("two") and a working copy ("three", a sync after T2)."""
    P, D = os.path.join(xfs, "primary"), os.path.join(xfs, "dr")
    os.makedirs(P)
    d = os.path.join(D, rel)
    for when, text in ((T1, "one"), (T2, "two")):
        h.write(d + "/disk.img", text)
        rp.make_point(D, rel, d, {"pv": rel, "time": when, "consistency": "crash-consistent"})
    h.write(d + "/disk.img", "three")
    return P, D, d


def drill_params(params, P, D, **kw):
    kw.setdefault("drill_id", "d1")
    return params(P, D, dr_server="dr-nfs.example", **kw)


def read(path):
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("spec,want", [("latest", "two"), (T1, "one"), ("2026-12-01T23:00:00+01:00", "one")])
def test_prepare_clones_the_chosen_point_and_returns_drill_objects(xfs, params, sync_mod, h, spec, want):
    P, D, d = make_site(xfs, h)
    p = drill_params(params, P, D, recovery_point=spec, namespace_map={"other": "x"})
    pv = claimed(h, "pv-a", os.path.join(P, "vms", "disk-a"))
    before = json.dumps(rp.list_points(D, "vms/disk-a"), sort_keys=True)
    entries, pvs, pvcs = sync_mod.drill_prepare(p, [pv])
    e = entries[0]
    assert e["status"] == "prepared", e
    assert e["drill_path"] == os.path.join(D, ".ocpdr-drills", "d1", "vms", "disk-a")
    assert read(e["drill_path"] + "/disk.img") == want
    assert e["rpo_seconds"] > 0 and e["namespace"] == "vms-drill" and e["claim"] == "pv-a-pvc"
    assert pvs[0]["metadata"]["name"] == "pv-a-drill-d1"
    assert pvs[0]["spec"]["nfs"] == {"server": "dr-nfs.example", "path": e["drill_path"]}
    assert pvs[0]["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pvs[0]["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "vms-drill", "name": "pv-a-pvc"}
    assert pvcs[0]["metadata"] == {"name": "pv-a-pvc", "namespace": "vms-drill", "labels": pvs[0]["metadata"]["labels"]}
    assert pvcs[0]["spec"]["volumeName"] == "pv-a-drill-d1"
    # The working copy and the catalogue are as they were.
    assert read(d + "/disk.img") == "three"
    assert json.dumps(rp.list_points(D, "vms/disk-a"), sort_keys=True) == before


def test_drill_data_is_its_own_while_replication_goes_on(xfs, params, sync_mod, h):
    P, D, d = make_site(xfs, h)
    live = os.path.join(P, "vms", "disk-a")
    h.write(live + "/disk.img", "four")
    pv = claimed(h, "pv-a", live)
    p = drill_params(params, P, D)
    e = sync_mod.drill_prepare(p, [pv])[0][0]
    # A guest in the drill writes to its disk; a sync brings the primary's write.
    h.write(e["drill_path"] + "/disk.img", "drill-write")
    entries = sync_mod.map_all(p, [pv])
    sync_mod.run_sync(p, entries, False)
    assert entries[0]["status"] == "synced", entries[0]
    assert read(d + "/disk.img") == "four"
    assert read(e["drill_path"] + "/disk.img") == "drill-write"
    assert os.path.isdir(e["drill_path"]), "the sync's --delete must not touch .ocpdr-drills"
    # Running the prepare again (a re-run after a failure) keeps the drill's data.
    again = sync_mod.drill_prepare(p, [pv])[0][0]
    assert again["status"] == "prepared" and read(again["drill_path"] + "/disk.img") == "drill-write"
    # ... and reports the point its directory holds, not the sync's newer one.
    assert len(rp.list_points(D, "vms/disk-a")["points"]) == 3
    assert again["point_time"] == e["point_time"] == T2


def test_teardown_removes_only_the_drill(xfs, params, sync_mod, h):
    P, D, d = make_site(xfs, h)
    pv = claimed(h, "pv-a", os.path.join(P, "vms", "disk-a"))
    p = drill_params(params, P, D)
    other = drill_params(params, P, D, drill_id="d2")
    e = sync_mod.drill_prepare(p, [pv])[0][0]
    e2 = sync_mod.drill_prepare(other, [pv])[0][0]
    assert sync_mod.drill_teardown(p, check_mode=True)["removed"] and os.path.isdir(e["drill_path"])
    assert sync_mod.drill_teardown(p) == {"path": os.path.join(D, ".ocpdr-drills", "d1"), "removed": True}
    assert not os.path.lexists(os.path.join(D, ".ocpdr-drills", "d1"))
    assert os.path.isdir(e2["drill_path"])
    assert sync_mod.drill_teardown(p)["removed"] is False
    assert read(d + "/disk.img") == "three" and len(rp.list_points(D, "vms/disk-a")["points"]) == 2


def test_prepare_refusals(xfs, params, sync_mod, h):
    P, D, _ = make_site(xfs, h)
    os.makedirs(os.path.join(D, "vms", "nopoints"))
    pvs = [claimed(h, "pv-a", os.path.join(P, "vms", "disk-a"), ns="elsewhere"),
           claimed(h, "pv-n", os.path.join(P, "vms", "nopoints")),
           claimed(h, "pv-x", "/etc/passwd"),
           claimed(h, "pv-app", os.path.join(P, "vms", "disk-a"))]
    p = drill_params(params, P, D, namespaces=["vms"])
    entries, out_pvs, _ = sync_mod.drill_prepare(p, pvs)
    got = {e["name"]: (e["status"], e["reason"]) for e in entries}
    assert got["pv-a"][0] == "skipped"
    assert got["pv-n"] == ("failed", "no recovery point: a drill starts only from a recovery point")
    assert got["pv-x"][0] == "failed" and "outside the export root" in got["pv-x"][1]
    assert got["pv-app"][0] == "prepared" and [x["metadata"]["name"] for x in out_pvs] == ["pv-app-drill-d1"]
    unclaimed = claimed(h, "pv-u", os.path.join(P, "vms", "disk-a"))
    del unclaimed["spec"]["claimRef"]
    e = sync_mod.drill_prepare(drill_params(params, P, D, drill_id="d4"), [unclaimed])[0][0]
    assert e["status"] == "failed" and "no claimRef" in e["reason"]
    app = drill_params(params, P, D, drill_id="d3", recovery_point="latest-application-consistent")
    e = sync_mod.drill_prepare(app, pvs[3:])[0][0]
    assert e["status"] == "failed" and "no application-consistent" in e["reason"]
    assert not os.path.lexists(os.path.join(D, ".ocpdr-drills", "d3"))


@pytest.mark.parametrize("kw,msg", [
    ({"drill_id": "Bad_Id"}, "drill_id"), ({"drill_id": "../x"}, "drill_id"), ({"drill_id": None}, "drill_id"),
    ({"dr_server": None}, "dr_server"), ({"recovery_point": "yesterday"}, "recovery_point"),
])
def test_bad_params(tmp_path, params, sync_mod, kw, msg):
    P, D = str(tmp_path / "p"), str(tmp_path / "d")
    os.makedirs(P)
    os.makedirs(D)
    p = params(P, D, mode="drill_prepare", drill_id="d1", dr_server="dr")
    p.update(kw)
    assert msg in (sync_mod.bad_params(p) or "")


def test_fenced_dr_site_refuses_before_anything(xfs, params, sync_mod, h, monkeypatch):
    P, D, _ = make_site(xfs, h)
    with open(os.path.join(D, sync_mod.MARKER), "w") as f:
        f.write("active\n")
    p = drill_params(params, P, D, mode="drill_prepare", pvs=[claimed(h, "pv-a", os.path.join(P, "vms", "disk-a"))])

    class Stop(Exception):
        pass

    class Module(object):
        check_mode = False
        params = p

        def fail_json(self, **kw):
            raise Stop(kw)

        def exit_json(self, **kw):
            raise AssertionError("drill ran while fenced: %s" % kw)

    with pytest.raises(Stop) as err:
        sync_mod.run_drill_mode(Module(), p)
    assert err.value.args[0]["fenced"] is True
    assert not os.path.lexists(os.path.join(D, ".ocpdr-drills"))
