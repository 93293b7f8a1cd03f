# pytest for roles/dr_common: the module_utils (ocpdr_points) and the
# ocpdr_sync module's functions, with real cp and rsync on real filesystems.
#   python3 -m pytest test/python        (as root for the XFS reflink tests)
import hashlib
import os
import shutil
import subprocess
import sys
import uuid

import pytest

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles", "dr_common")
sys.path.insert(0, os.path.normpath(os.path.join(ROLE, "module_utils")))
sys.path.insert(0, os.path.normpath(os.path.join(ROLE, "library")))

SERVER = "nfs.example"


def reflink_works(d):
    src, dst = os.path.join(d, ".probe-src"), os.path.join(d, ".probe-dst")
    with open(src, "w") as f:
        f.write("x")
    try:
        return subprocess.run(["cp", "--reflink=always", src, dst], stderr=subprocess.DEVNULL).returncode == 0
    finally:
        for f in (src, dst):
            if os.path.exists(f):
                os.remove(f)


@pytest.fixture(scope="session")
def xfs_mount(tmp_path_factory):
    """A 400M XFS filesystem with reflink=1 on a loop file (root and mkfs.xfs needed)."""
    if os.geteuid() != 0:
        pytest.skip("reflink tests need root (to mount an XFS loop filesystem)")
    if not shutil.which("mkfs.xfs"):
        pytest.skip("reflink tests need mkfs.xfs (apt-get install xfsprogs)")
    base = tmp_path_factory.mktemp("xfs")
    img, mnt = str(base / "fs.img"), str(base / "mnt")
    os.mkdir(mnt)
    subprocess.run(["truncate", "-s", "400M", img], check=True)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", img], check=True)
    r = subprocess.run(["mount", "-o", "loop", img, mnt], stderr=subprocess.PIPE)
    if r.returncode != 0:
        pytest.skip("cannot loop-mount an XFS image here: %s" % r.stderr.decode().strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt])
        os.remove(img)


@pytest.fixture
def xfs(xfs_mount):
    """A fresh directory on the XFS reflink filesystem."""
    d = os.path.join(xfs_mount, "t-" + uuid.uuid4().hex[:8])
    os.mkdir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def noreflink(tmp_path):
    """A directory whose filesystem cannot reflink (ext4 or tmpfs)."""
    d = str(tmp_path / "plain")
    os.mkdir(d)
    if not reflink_works(d):
        yield d
        return
    if os.geteuid() != 0:
        pytest.skip("the temporary directory's filesystem supports reflink and mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", d])


@pytest.fixture
def sync_mod():
    """The ocpdr_sync module, imported by path (it needs Ansible's module_utils.basic)."""
    pytest.importorskip("ansible.module_utils.basic", reason="ocpdr_sync imports Ansible (apt-get install ansible)")
    import ocpdr_sync
    return ocpdr_sync


@pytest.fixture
def params(sync_mod, tmp_path):
    """Module parameters (the argument spec's defaults) for direct calls, with
    the local-transport seam: the "primary" is a directory on this host."""
    def make(primary_root, dr_root, **kw):
        p = dict((k, v.get("default")) for k, v in sync_mod.argument_spec().items())
        p.update(primary_server=SERVER, primary_export_root=primary_root, dr_export_root=dr_root,
                 local_transport=True, parallelism=2, lock_timeout=10, ssh_control_persist=0,
                 metadata_dir=str(tmp_path / "meta"))
        p.update(kw)
        return p
    return make


def pv(name, path):
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"nfs": {"server": SERVER, "path": path}}}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def tree(path):
    """{relative path: sha256} of every regular file below path."""
    out = {}
    for root, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def h():
    """Helpers: pv(name, path), write(path, data), tree(path)."""
    class H(object):
        pass
    x = H()
    x.pv, x.write, x.tree, x.server = pv, write, tree, SERVER
    return x
