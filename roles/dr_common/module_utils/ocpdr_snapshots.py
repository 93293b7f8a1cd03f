# -*- coding: utf-8 -*-
# ocpv-dr: VolumeSnapshot archives of csi-driver-nfs at DR (docs/recovery-points.md,
# "VolumeSnapshot archives"). Pure logic, standard library only, no Ansible: the
# ocpdr_sync module imports it as ansible.module_utils.ocpdr_snapshots, pytest by path.
"""Parse and validate csi-driver-nfs snapshot handles, map their archives, build import objects."""

from __future__ import absolute_import, division, print_function

import hashlib
import os
import re

__metaclass__ = type

DRIVER = "nfs.csi.k8s.io"
SEP = "#"
# csi-driver-nfs pkg/nfs/controllerserver.go: the snapshot id is
# server#baseDir#snapName#snapName#srcVolume (baseDir trimmed of "/"), and
# CreateSnapshot writes <share>/<snapName>/<srcVolume>.tar.gz. Newer releases
# can write an uncompressed <srcVolume>.tar: both are looked for, in order.
ARCHIVE_EXTS = (".tar.gz", ".tar")
MAX_HANDLE = 1024
SERVER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$")
# One path component: no leading dot (so no "..", no .ocpdr*), no metacharacters.
PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# A share component: the export root part is the site's own configuration (it
# may hold a dot directory); below the root, components are checked as PART_RE.
SHARE_PART_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
RESERVED_PREFIXES = (".ocpdr", "archived-")
RESTORED_LABEL = "ocpv-dr.io/restored"
HANDLE_ANNOTATION = "ocpv-dr.io/primary-snapshot-handle"

# Run on the primary NFS host (over SSH when pulling, by this Python when
# local): the first existing candidate archive with its size, real path and,
# when asked, sha256. Reads {"paths": [...], "extra": {"hash": bool}}.
PROBE = r"""
import hashlib, json, os, sys
req = json.load(sys.stdin)
out = {"exists": False}
for p in req["paths"]:
    if not os.path.lexists(p):
        continue
    out = {"exists": True, "path": p, "real": os.path.realpath(p), "regular": os.path.isfile(p) and not os.path.islink(p)}
    if out["regular"]:
        out["size"] = os.path.getsize(p)
        if (req.get("extra") or {}).get("hash"):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            out["sha256"] = h.hexdigest()
    break
json.dump(out, sys.stdout)
"""


class BadHandle(ValueError):
    """A snapshot handle (or its mapping) that must not be acted on."""


def _part(value, what):
    if (value or "").startswith(RESERVED_PREFIXES):
        raise BadHandle("%s %r uses a name reserved for DR (.ocpdr*, archived-*)" % (what, value))
    if not PART_RE.match(value or ""):
        raise BadHandle("%s %r is not a plain path component (letters, digits, . _ -; no leading dot)" % (what, value))
    return value


def parse_handle(handle):
    """Split a csi-driver-nfs snapshot handle into server, share (no leading or
    trailing slash, as the driver writes it; one with slashes is accepted too),
    snapshot name and source volume; refuse anything else."""
    if not isinstance(handle, str) or not handle or len(handle) > MAX_HANDLE:
        raise BadHandle("snapshot handle must be a non-empty string of at most %d characters" % MAX_HANDLE)
    parts = handle.split(SEP)
    if len(parts) != 5:
        raise BadHandle("snapshot handle %r does not have the 5 fields server#share#snapName#snapName#volume" % handle)
    server, share, snap, snap_dir, volume = parts
    if not SERVER_RE.match(server):
        raise BadHandle("server %r in the snapshot handle is not a host name or address" % server)
    share = share.strip("/")
    for comp in share.split("/") if share else []:
        if comp in (".", "..") or not SHARE_PART_RE.match(comp):
            raise BadHandle("share component %r in the snapshot handle is not a plain path component" % comp)
    _part(snap, "snapshot name")
    if snap_dir != snap:
        raise BadHandle("snapshot handle %r names archive directory %r, not its snapshot %r" % (handle, snap_dir, snap))
    _part(volume, "source volume")
    return {"server": server, "share": share, "snapshot": snap, "volume": volume, "handle": handle}


def _under(path, root, what):
    """Relative path of path below root ("." for root itself), or BadHandle."""
    norm, root = os.path.normpath(path), os.path.normpath(root)
    if norm != root and not norm.startswith(root.rstrip("/") + "/"):
        raise BadHandle("%s %s is not under the export root %s" % (what, norm, root))
    return os.path.relpath(norm, root)


def archive_paths(snap, primary_server, primary_root, dr_root):
    """Where a parsed snapshot's archive is on the primary and goes at DR:
    candidates (primary files, in order), primary_dir, rel_dir (the snapshot
    directory below the export root), dr_dir, dr_share and the DR file names."""
    if snap["server"] != primary_server:
        raise BadHandle("snapshot server %r is not the configured primary NFS server %r" % (snap["server"], primary_server))
    share_rel = _under("/" + snap["share"], primary_root, "snapshot share")
    for comp in share_rel.split("/") if share_rel != "." else []:
        _part(comp, "share component below the export root")
    rel_dir = os.path.normpath(os.path.join(share_rel, snap["snapshot"]))
    names = [snap["volume"] + ext for ext in ARCHIVE_EXTS]
    primary_dir = os.path.join(os.path.normpath(primary_root), rel_dir)
    dr_dir = os.path.join(os.path.normpath(dr_root), rel_dir)
    return {
        "rel_dir": rel_dir, "primary_dir": primary_dir, "dr_dir": dr_dir,
        "dr_share": os.path.normpath(os.path.join(dr_root, share_rel)),
        "candidates": [os.path.join(primary_dir, n) for n in names],
        "dr_files": dict((os.path.join(primary_dir, n), os.path.join(dr_dir, n)) for n in names),
    }


def dr_handle(snap, dr_server, dr_share):
    """The handle of the same archive on the DR NFS server (share trimmed of
    slashes, as the driver writes it)."""
    if not dr_server or not SERVER_RE.match(dr_server):
        raise BadHandle("DR NFS server %r is not a host name or address" % dr_server)
    return SEP.join([dr_server, dr_share.strip("/"), snap["snapshot"], snap["snapshot"], snap["volume"]])


def content_handle(vsc):
    """(handle, why-not): the snapshot handle of a csi-driver-nfs
    VolumeSnapshotContent that is ready; (None, reason) otherwise."""
    spec, status = vsc.get("spec") or {}, vsc.get("status") or {}
    if spec.get("driver") != DRIVER:
        return None, "driver %r is not %s: no archive to copy" % (spec.get("driver"), DRIVER)
    handle = status.get("snapshotHandle") or (spec.get("source") or {}).get("snapshotHandle")
    if not status.get("readyToUse") or not handle:
        return None, "pending"
    return handle, ""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def k8s_name(value, what):
    if not isinstance(value, str) or not K8S_NAME_RE.match(value):
        raise BadHandle("%s %r is not a Kubernetes name" % (what, value))
    return value


def import_objects(doc, dr_handle_value):
    """The pre-provisioned VolumeSnapshotContent and its VolumeSnapshot that
    make a replicated archive usable at DR (deletionPolicy Retain: deleting
    them at DR never deletes the archive)."""
    ns, name = k8s_name(doc.get("namespace"), "namespace"), k8s_name(doc.get("name"), "VolumeSnapshot name")
    content = k8s_name(doc.get("boundVolumeSnapshotContentName"), "VolumeSnapshotContent name")
    labels = dict((k, v) for k, v in (doc.get("labels") or {}).items() if isinstance(v, str))
    labels[RESTORED_LABEL] = "true"
    vsc = {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
        "metadata": {"name": content, "labels": {RESTORED_LABEL: "true"},
                     "annotations": {HANDLE_ANNOTATION: (doc.get("archive") or {}).get("handle", "")}},
        "spec": {"deletionPolicy": "Retain", "driver": DRIVER, "source": {"snapshotHandle": dr_handle_value},
                 "sourceVolumeMode": "Filesystem", "volumeSnapshotRef": {"name": name, "namespace": ns}},
    }
    vs = {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"source": {"volumeSnapshotContentName": content}},
    }
    return vsc, vs
