# VolumeSnapshot archives of csi-driver-nfs at DR: the pure logic of
# ocpdr_snapshots (handles, paths, import objects) and the ocpdr_sync snapshot
# modes on real files (local transport: the "primary" is a directory here).
import hashlib
import json
import os
import tarfile

import pytest

import ocpdr_snapshots as sn

SERVER = "nfs.example"
SNAP = "snapshot-016f784f-56f4-44d1-9041-5f59e82dbce1"
VOL = "pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64"


def handle(share="srv/nfs/csi", snap=SNAP, vol=VOL, server=SERVER, snap_dir=None):
    return "#".join([server, share, snap, snap if snap_dir is None else snap_dir, vol])


@pytest.mark.parametrize("h,want", [
    (handle(), {"server": SERVER, "share": "srv/nfs/csi", "snapshot": SNAP, "volume": VOL}),
    # the issue writes the share with its slash; the driver trims it: both work
    (handle(share="/srv/nfs/csi/"), {"server": SERVER, "share": "srv/nfs/csi", "snapshot": SNAP, "volume": VOL}),
    (handle(share="", server="192.0.2.10"), {"server": "192.0.2.10", "share": "", "snapshot": SNAP, "volume": VOL}),
    (handle(vol="disk_1.v2"), {"server": SERVER, "share": "srv/nfs/csi", "snapshot": SNAP, "volume": "disk_1.v2"}),
])
def test_parse_handle(h, want):
    got = sn.parse_handle(h)
    assert {k: got[k] for k in want} == want
    assert got["handle"] == h


@pytest.mark.parametrize("h,why", [
    ("", "non-empty"),
    (None, "non-empty"),
    ("x" * 2000, "non-empty"),
    ("nfs.example#share#snap#snap", "5 fields"),
    ("nfs.example#share#snap#snap#vol#extra", "5 fields"),
    (handle(snap_dir="other"), "archive directory"),
    (handle(share="srv/../etc"), "share component"),
    (handle(share="srv/./nfs"), "share component"),
    (handle(share="srv//nfs"), "share component"),
    (handle(share="srv/a;b"), "share component"),
    (handle(share="srv/a b"), "share component"),
    (handle(snap=".."), "snapshot name"),
    (handle(snap=".ocpdr-metadata"), "snapshot name"),
    (handle(snap="archived-x"), "reserved"),
    (handle(snap="a/b"), "snapshot name"),
    (handle(vol="../../etc/passwd"), "source volume"),
    (handle(vol="v;rm -rf /"), "source volume"),
    (handle(vol="v$(id)"), "source volume"),
    (handle(vol="v\nx"), "source volume"),
    (handle(vol=""), "source volume"),
    (handle(server="-oProxyCommand=x"), "server"),
    (handle(server="a b"), "server"),
    (handle(server=""), "server"),
])
def test_hostile_handles_are_refused(h, why):
    with pytest.raises(sn.BadHandle, match=why):
        sn.parse_handle(h)


@pytest.mark.parametrize("share,root,rel_dir,dr_share", [
    ("srv/nfs/csi", "/srv/nfs", "csi/" + SNAP, "/dr/root/csi"),
    ("srv/nfs", "/srv/nfs", SNAP, "/dr/root"),
    ("srv/nfs/a/b", "/srv/nfs/", "a/b/" + SNAP, "/dr/root/a/b"),
    ("home/.lab/nfs/csi", "/home/.lab/nfs", "csi/" + SNAP, "/dr/root/csi"),
])
def test_archive_paths(share, root, rel_dir, dr_share):
    w = sn.archive_paths(sn.parse_handle(handle(share=share)), SERVER, root, "/dr/root")
    assert w["rel_dir"] == rel_dir
    assert w["dr_share"] == dr_share
    r = root.rstrip("/")
    assert w["candidates"] == ["%s/%s/%s.tar.gz" % (r, rel_dir, VOL), "%s/%s/%s.tar" % (r, rel_dir, VOL)]
    assert w["dr_files"][w["candidates"][0]] == "/dr/root/%s/%s.tar.gz" % (rel_dir, VOL)


@pytest.mark.parametrize("h,server,root,why", [
    (handle(share="srv/other"), SERVER, "/srv/nfs", "not under the export root"),
    (handle(share="srv/nfsx/csi"), SERVER, "/srv/nfs", "not under the export root"),
    (handle(share=""), SERVER, "/srv/nfs", "not under the export root"),
    (handle(), "other.example", "/srv/nfs", "not the configured primary"),
    (handle(share="srv/nfs/.ocpdr-points"), SERVER, "/srv/nfs", "reserved"),
    (handle(share="srv/nfs/a/.hidden"), SERVER, "/srv/nfs", "no leading dot"),
    (handle(share="srv/nfs/archived-csi-20260101T000000Z"), SERVER, "/srv/nfs", "reserved"),
])
def test_archive_outside_the_export_root_is_refused(h, server, root, why):
    with pytest.raises(sn.BadHandle, match=why):
        sn.archive_paths(sn.parse_handle(h), server, root, "/dr/root")


def test_dr_handle_names_the_dr_server_and_share():
    snap = sn.parse_handle(handle())
    assert sn.dr_handle(snap, "dr.example", "/dr/root/csi") == "dr.example#dr/root/csi#%s#%s#%s" % (SNAP, SNAP, VOL)
    with pytest.raises(sn.BadHandle):
        sn.dr_handle(snap, "", "/dr/root/csi")


@pytest.mark.parametrize("vsc,want", [
    ({"spec": {"driver": "nfs.csi.k8s.io"}, "status": {"readyToUse": True, "snapshotHandle": "h"}}, ("h", "")),
    ({"spec": {"driver": "nfs.csi.k8s.io"}, "status": {"readyToUse": False, "snapshotHandle": "h"}}, (None, "pending")),
    ({"spec": {"driver": "nfs.csi.k8s.io"}, "status": {"readyToUse": True}}, (None, "pending")),
    ({"spec": {"driver": "rbd.csi.ceph.com"}, "status": {"readyToUse": True, "snapshotHandle": "h"}}, None),
])
def test_content_handle(vsc, want):
    got = sn.content_handle(vsc)
    if want is None:
        assert got[0] is None and "not nfs.csi.k8s.io" in got[1]
    else:
        assert got == want


def test_import_objects_are_pre_provisioned_and_retained():
    doc = {"namespace": "ns-a", "name": "snap-a", "boundVolumeSnapshotContentName": "snapcontent-1",
           "labels": {"app": "vm1"}, "archive": {"handle": handle()}}
    vsc, vs = sn.import_objects(doc, "dr.example#x#s#s#v")
    assert vsc["spec"] == {"deletionPolicy": "Retain", "driver": "nfs.csi.k8s.io", "source": {"snapshotHandle": "dr.example#x#s#s#v"},
                           "sourceVolumeMode": "Filesystem", "volumeSnapshotRef": {"name": "snap-a", "namespace": "ns-a"}}
    assert vsc["metadata"]["name"] == "snapcontent-1"
    assert vs["spec"] == {"source": {"volumeSnapshotContentName": "snapcontent-1"}}
    assert vs["metadata"]["labels"] == {"app": "vm1", "ocpv-dr.io/restored": "true"}
    for bad in ({"namespace": "NS", "name": "a", "boundVolumeSnapshotContentName": "c"},
                {"namespace": "ns", "name": "a/b", "boundVolumeSnapshotContentName": "c"},
                {"namespace": "ns", "name": "a", "boundVolumeSnapshotContentName": None}):
        with pytest.raises(sn.BadHandle):
            sn.import_objects(bad, "h")


# ------------------------------------------------------------ ocpdr_sync modes on real files

def make_archive(share_dir, vol=VOL, payload=b"disk image bytes" * 1000):
    """A real archive laid out as csi-driver-nfs does: tar -C <pv dir> -czf <share>/<snap>/<vol>.tar.gz ."""
    src = os.path.join(share_dir, vol)
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "disk.img"), "wb") as f:
        f.write(payload)
    d = os.path.join(share_dir, SNAP)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, vol + ".tar.gz")
    with tarfile.open(path, "w:gz") as t:
        t.add(src, arcname=".")
    return path


def objs(share, ready=True, ref=("ns-a", "snap-a")):
    vs = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
          "metadata": {"name": "snap-a", "namespace": "ns-a", "uid": "u1"},
          "spec": {"source": {"persistentVolumeClaimName": "disk"}},
          "status": {"readyToUse": ready, "boundVolumeSnapshotContentName": "snapcontent-1"}}
    vsc = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "metadata": {"name": "snapcontent-1"},
           "spec": {"driver": "nfs.csi.k8s.io", "deletionPolicy": "Delete",
                    "volumeSnapshotRef": {"namespace": ref[0], "name": ref[1]}},
           "status": {"readyToUse": ready, "snapshotHandle": handle(share=share.strip("/"))}}
    return vs, vsc


@pytest.fixture
def site(tmp_path, params):
    prim, dr = tmp_path / "primary", tmp_path / "dr"
    prim.mkdir()
    dr.mkdir()
    share = str(prim / "csi")
    arc = make_archive(share)
    p = params(str(prim), str(dr), dr_server="dr.example")
    return p, share, arc, str(dr)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def doc_of(p):
    with open(os.path.join(p["metadata_dir"], "ns-a", "snap-a.json")) as f:
        return json.load(f)


def test_put_copies_the_archive_once_and_records_it(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    res, changed = sync_mod.snapshots_put(p, [vs], [], False)
    at_dr = os.path.join(dr, "csi", SNAP, VOL + ".tar.gz")
    assert changed and res[0]["status"] == "recorded" and res[0]["archive_status"] == "copied", res
    assert sha(at_dr) == sha(arc)
    a = doc_of(p)["archive"]
    assert a == {"status": "replicated", "path": at_dr, "sha256": sha(arc), "size": os.path.getsize(arc), "primary_path": arc,
                 "handle": vsc["status"]["snapshotHandle"], "dr_handle": "dr.example#%s#%s#%s#%s" % (os.path.join(dr, "csi").strip("/"), SNAP, SNAP, VOL)}
    res, changed = sync_mod.snapshots_put(p, [vs], [], False)
    assert not changed and res[0]["archive_status"] == "present", res
    # A damaged DR copy of the same size is noticed with the checksum option and replaced.
    with open(at_dr, "r+b") as f:
        f.write(b"X")
    p["checksum"] = True
    res, changed = sync_mod.snapshots_put(p, [vs], [], False)
    assert changed and res[0]["archive_status"] == "copied" and sha(at_dr) == sha(arc)


def test_put_pending_missing_and_hostile(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share, ready=False)
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "pending" and res[0]["archive_status"] == "pending"
    vs, vsc = objs(share)
    vsc["status"]["readyToUse"] = False
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "recorded" and res[0]["archive_status"] == "pending"
    os.remove(arc)
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "failed" and "missing on the primary" in res[0]["reason"], res
    assert doc_of(p)["archive"]["status"] == "failed"
    vs, vsc = objs(share, ref=("ns-a", "other"))
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "failed" and "not to this VolumeSnapshot" in res[0]["reason"]
    vs, vsc = objs(share)
    vsc["status"]["snapshotHandle"] = handle(share=share.strip("/"), vol="../../etc")
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "failed" and "source volume" in res[0]["reason"]
    assert not os.path.exists(os.path.join(dr, "csi", SNAP))


def test_symlinked_archive_is_refused(sync_mod, site, tmp_path):
    p, share, arc, dr = site
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    os.remove(arc)
    os.symlink(str(secret), arc)
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    res, _ = sync_mod.snapshots_put(p, [vs], [], False)
    assert res[0]["status"] == "failed" and "not a regular file" in res[0]["reason"]


def test_check_mode_copies_nothing(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    res, changed = sync_mod.snapshots_put(p, [vs], [], True)
    assert changed and res[0]["archive_status"] == "copied"
    assert not os.path.exists(os.path.join(dr, "csi", SNAP))


def test_delete_archives_at_dr_and_import(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    sync_mod.snapshots_put(p, [vs], [], False)
    res, objects = sync_mod.snapshots_import(p, ["ns-a", "ns-none"])
    assert [r["status"] for r in res] == ["importable"], res
    kinds = [o["kind"] for o in objects]
    assert kinds == ["VolumeSnapshotContent", "VolumeSnapshot"]
    assert objects[0]["spec"]["source"]["snapshotHandle"].startswith("dr.example#")
    assert objects[0]["spec"]["deletionPolicy"] == "Retain"
    res, changed = sync_mod.snapshots_delete(p, [vs], False)
    assert changed and res[0]["status"] == "removed"
    target = res[0]["archive_path"]
    assert os.path.basename(target).startswith("archived-" + SNAP + "-")
    assert sha(os.path.join(target, VOL + ".tar.gz")) == sha(arc)
    assert not os.path.exists(os.path.join(dr, "csi", SNAP))
    res, objects = sync_mod.snapshots_import(p, ["ns-a"])
    assert res == [] and objects == []


def test_import_refuses_a_missing_dr_archive(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    sync_mod.snapshots_put(p, [vs], [], False)
    os.remove(os.path.join(dr, "csi", SNAP, VOL + ".tar.gz"))
    res, objects = sync_mod.snapshots_import(p, ["ns-a"])
    assert res[0]["status"] == "failed" and "missing at DR" in res[0]["reason"] and objects == []


def test_snapshot_dirs_are_not_orphans(sync_mod, site):
    p, share, arc, dr = site
    p["primary_export_root"] = share  # the share is the export root: the snapshot dir is top level
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    assert SNAP in sync_mod.snapshot_tops(p)


def test_periodic_reconcile_archives_the_archive_of_a_vanished_snapshot(sync_mod, site):
    p, share, arc, dr = site
    vs, vsc = objs(share)
    p["snapshot_contents"] = [vsc]
    sync_mod.snapshots_put(p, [vs], [], False)
    p.update(snapshots=[], confirm_deletes=True)
    out = sync_mod.reconcile_metadata(p, False)
    assert [r["status"] for r in out] == ["removed"], out
    assert os.path.basename(out[0]["archive_path"]).startswith("archived-" + SNAP + "-")
    assert sha(os.path.join(out[0]["archive_path"], VOL + ".tar.gz")) == sha(arc)
    assert not os.path.exists(os.path.join(dr, "csi", SNAP))
