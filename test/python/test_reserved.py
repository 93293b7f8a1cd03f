# The names captures, points and restores use are reserved (.ocpdr*): never a
# PV path, never sent or deleted by rsync.
import os
import subprocess

import pytest

import ocpdr_points as rp


@pytest.mark.parametrize("path", [
    "/srv/nfs/.ocpdr-captures",
    "/srv/nfs/.ocpdr-captures/pv-a/20261202T110000.123456Z",
    "/srv/nfs/.ocpdr-points/pv-a",
    "/srv/nfs/share/.ocpdr-points/x",
    "/srv/nfs/a/b/.ocpdr-restore-pv-a-20261202T110000.123456Z",
    "/srv/nfs/a/.ocpdr-restore-pv-a-20261202T110000.123456Z/c",
])
def test_map_pv_refuses_reserved_names_at_any_depth(sync_mod, params, h, path):
    p = params("/srv/nfs", "/srv/dr")
    with pytest.raises(sync_mod.Refused, match="reserved"):
        sync_mod.map_pv(h.pv("x", path), p)
    assert sync_mod.map_all(p, [h.pv("x", path)])[0]["status"] == "refused"


@pytest.mark.parametrize("name", [rp.CAPTURES_DIR, rp.POINTS_DIR, rp.RESTORE_PREFIX + "pv-20261202T110000.123456Z"])
def test_reserved_name_covers_the_point_names(sync_mod, name):
    assert sync_mod.reserved_name(name)


def test_rsync_delete_of_a_parent_never_deletes_points_inside(sync_mod, params, h, tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    h.write(src + "/share/pvc-1/disk.img", "new")
    h.write(dst + "/share/pvc-1/disk.img", "old")
    h.write(dst + "/share/stale", "deleted by --delete")
    for kept in ("/.ocpdr-points/pvc-1/20261202T110000.123456Z/data/disk.img",
                 "/share/.ocpdr-points/pvc-1/20261202T110000.123456Z/manifest.json",
                 "/share/.ocpdr-restore-pvc-1-20261202T110000.123456Z/disk.img",
                 "/share/pvc-1/.ocpdr-captures/x"):
        h.write(dst + kept, "kept")
    p = params(str(tmp_path), str(tmp_path))
    r = subprocess.run(sync_mod.rsync_argv(p, src, dst, False), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(dst + "/share/stale")
    with open(dst + "/share/pvc-1/disk.img") as f:
        assert f.read() == "new"
    for kept in ("/.ocpdr-points/pvc-1/20261202T110000.123456Z/data/disk.img",
                 "/share/.ocpdr-points/pvc-1/20261202T110000.123456Z/manifest.json",
                 "/share/.ocpdr-restore-pvc-1-20261202T110000.123456Z/disk.img",
                 "/share/pvc-1/.ocpdr-captures/x"):
        assert os.path.exists(dst + kept), kept


def test_rsync_from_a_capture_path_is_not_excluded(sync_mod, params, h, tmp_path):
    """The .ocpdr* excludes match names inside the transfer, not the source
    directory's own path (<root>/.ocpdr-captures/<rel>/<stamp>/)."""
    cap = str(tmp_path / "primary" / ".ocpdr-captures" / "ns" / "pv" / "20261202T110000.123456Z")
    h.write(cap + "/disk.img", "captured")
    h.write(cap + "/sub/.ocpdr-inner", "still excluded inside")
    dst = str(tmp_path / "dr" / "ns" / "pv")
    os.makedirs(dst)   # as sync_one does before the rsync
    p = params(str(tmp_path / "primary"), str(tmp_path / "dr"))
    r = subprocess.run(sync_mod.rsync_argv(p, cap, dst, False), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert h.tree(dst) == {"disk.img": h.tree(cap)["disk.img"]}
    assert os.path.isdir(dst + "/sub")


def test_safe_dir_refuses_a_symlinked_points_directory(tmp_path):
    root = str(tmp_path / "dr")
    os.makedirs(root)
    os.makedirs(str(tmp_path / "elsewhere" / "pv"))
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(root, rp.POINTS_DIR))
    with pytest.raises(ValueError, match="symlink"):
        rp.points_dir(root, "pv")
    with pytest.raises(ValueError, match="symlink"):
        rp.list_points(root, "pv")
    assert rp.points_dir(str(tmp_path / "elsewhere"), "x").endswith("/.ocpdr-points/x")


def test_pull_rsync_argv_from_a_capture_holds_the_primary_lock(sync_mod, params):
    p = params("/srv/nfs", "/srv/dr", local_transport=False, ssh_host="primary.example")
    argv = sync_mod.rsync_argv(p, "/srv/nfs/.ocpdr-captures/ns/pv/20261202T110000.123456Z", "/srv/dr/ns/pv", False,
                               src_lock=sync_mod.lock_path(sync_mod.captures_root(p), "ns/pv"))
    assert "--rsync-path=flock -s -w 10 /srv/nfs/.ocpdr-captures/.ocpdr-locks/ns%pv.lock rsync" in argv
    assert argv[-2:] == ["root@primary.example:/srv/nfs/.ocpdr-captures/ns/pv/20261202T110000.123456Z/", "/srv/dr/ns/pv/"]
    assert "-e" in argv
