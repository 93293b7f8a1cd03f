#!/usr/bin/python3
# -*- coding: utf-8 -*-
# ocpv-dr: the one piece that maps PV paths, validates them, and moves data.
# Runs on the DR NFS server (pull, the default). Standard library only.
"""ocpdr_sync: path mapping, validation, parallel rsync, verification, archive, snapshot metadata."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ocpdr_sync
short_description: Map, validate and replicate NFS PV directories to the DR NFS server
description:
  - Maps a PersistentVolume (C(spec.nfs) or csi-driver-nfs C(spec.csi)) to its directory on the primary NFS
    server and to the DR path (DR export root + the path relative to the primary export root).
  - Refuses any PV whose server is not the primary NFS server, whose path leaves the export root (C(..),
    symlinks), or contains shell metacharacters. Refuses to sync while the DR-active fence marker exists.
  - Pulls with rsync over SSH (argv, never a shell), several PVs in parallel, each under a per-directory lock.
  - Consistent recovery points (docs/recovery-points.md) - C(capture) and C(capture_release) run on the
    primary NFS server, C(sync) pulls from the captures and keeps recovery points at DR, C(point) keeps them
    after a push, C(points) lists the catalogue, C(points_prune) (and C(periodic)) enforce retention,
    C(rewrite) restores a chosen point at failover.
options:
  mode:
    description:
      - What to do. C(capture) and C(capture_release) run on the primary NFS server (dr_export_root is not
        needed); C(point), C(points) and C(points_prune) on the DR NFS server.
    type: str
    required: true
    choices: [map, sync, archive, snapshot_put, snapshot_delete, periodic, rewrite, capture, capture_release, point, points, points_prune,
              snapshot_import, drill_prepare, drill_teardown]
  pvs:
    description: PersistentVolume objects.
    type: list
    elements: dict
    default: []
  snapshots:
    description: VolumeSnapshot objects (snapshot_put, snapshot_delete, periodic).
    type: list
    elements: dict
    default: []
  snapshot_contents:
    description:
      - VolumeSnapshotContent objects bound to the snapshots (snapshot_put, periodic). For a ready csi-driver-nfs
        content (driver nfs.csi.k8s.io, handle server#share#snapName#snapName#volume) the archive
        C(<share>/<snapName>/<volume>.tar.gz) (or C(.tar)) is pulled from the primary to the same place below the DR
        export root, unless DR has it with the same size and sha256, and recorded in the metadata document
        (C(archive) - status, path, sha256, size, handle, dr_handle). snapshot_delete moves it to
        C(archived-<snapName>-<stamp>). See docs/recovery-points.md, VolumeSnapshot archives.
    type: list
    elements: dict
    default: []
  namespaces:
    description:
      - In snapshot_import mode, the namespaces whose replicated snapshot archives are returned as pre-provisioned
        VolumeSnapshotContents (source.snapshotHandle on dr_server, deletionPolicy Retain) and VolumeSnapshots
        (C(objects)), for the caller to apply at DR.
    type: list
    elements: str
    default: []
  primary_server:
    description: The primary NFS server address exactly as PVs name it.
    type: str
    required: true
  primary_export_root:
    description: Absolute export root on the primary NFS server.
    type: path
    required: true
  dr_export_root:
    description: Absolute export root on the DR NFS server (this host). Required except in modes capture and capture_release.
    type: path
  ssh_host:
    description: Address used to reach the primary NFS server over SSH (defaults to primary_server).
    type: str
  ssh_port:
    description: SSH port of the primary NFS server.
    type: int
    default: 22
  direction:
    description:
      - pull (default) runs on the DR NFS server and pulls from the primary over SSH; it works even when
        the primary site is gone. push runs on the primary NFS server and pushes to the DR NFS server
        (ssh_host/ssh_port/ssh_user/ssh_key/known_hosts then name the DR server), for sites where only the
        primary may open connections. Mapping, validation, rsync flags, locking and verification are the
        same code in both directions. push applies to modes sync and periodic (with sync_results).
    type: str
    choices: [pull, push]
    default: pull
  sync_results:
    description:
      - In periodic mode, results of a sync already done in push direction on the primary; the periodic
        run then only does the DR-side work (recovery points, retention, orphans, archives, snapshot
        metadata) and reports these.
      - In point mode (required), the results of a push sync whose recovery points to keep at DR.
    type: list
    elements: dict
  captures:
    description:
      - In sync mode, the C(captures) returned by mode capture (each optionally extended by the freeze step with
        C(consistency) application-consistent or crash-consistent, C(vms) and C(frozen) lists), matched to PVs by
        C(rel). A PV whose capture has status ok is synced from the capture (which must be a
        C(<primary_export_root>/.ocpdr-captures/<rel>/<stamp>) directory), any other PV from its live
        directory (consistency inconsistent).
    type: list
    elements: dict
    default: []
  points:
    description:
      - In sync (pull), periodic and point modes, keep each verified sync as a recovery point in
        C(<dr_export_root>/.ocpdr-points/<rel>/<stamp>/) (reflink clone and manifest.json).
    type: bool
    default: true
  job_id:
    description: Job identifier recorded in each recovery point's manifest.
    type: str
    default: ""
  capture_method:
    description:
      - In capture mode, how to capture each PV directory - reflink (C(cp -a --reflink=always), the default),
        command (capture_command), or none (no capture; the sync copies live, labelled inconsistent).
    type: str
    choices: [reflink, command, none]
    default: reflink
  capture_command:
    description:
      - In capture mode with capture_method command, the argv (never a shell) that creates the directory
        C({dst}) as a copy of C({src}); C({src}), C({dst}), C({name}) and C({rel}) are replaced in each argument.
    type: list
    elements: str
  capture_timeout:
    description:
      - In capture mode, seconds all captures of the run may take (the freeze budget); a capture still running
        then is stopped and fails, later PVs are not captured (status failed). 0 is no limit.
    type: int
    default: 0
  capture_keep:
    description: In capture_release mode, captures kept per PV (the newest).
    type: int
    default: 1
  points_keep_all_hours:
    description: In periodic and points_prune modes, keep every recovery point newer than this many hours.
    type: int
    default: 24
  points_daily_days:
    description:
      - In periodic and points_prune modes, then keep the newest point of each of the last this many UTC days
        (today included). The newest point of a PV is always kept; damaged points are reported, never deleted.
    type: int
    default: 7
  recovery_point:
    description:
      - In rewrite mode, the recovery point each PV is restored from - latest, latest-application-consistent,
        or an RFC 3339 time (the newest point at or before it). With latest a PV without points keeps its DR
        directory (reported as a working copy, consistency unknown); otherwise a PV without a matching point fails.
    type: str
    default: latest
  use_points:
    description: In rewrite mode, restore recovery points (false keeps every DR directory as it is).
    type: bool
    default: true
  ssh_control_persist:
    description:
      - Seconds an idle SSH connection to the primary stays open for reuse by the next probe or rsync
        (OpenSSH ControlMaster, socket under ~/.ssh of the DR host user); 0 opens one connection per call.
    type: int
    default: 60
  ssh_user:
    description: SSH user on the primary NFS server.
    type: str
    default: root
  ssh_key:
    description: Private key on this host for the primary NFS server.
    type: path
  known_hosts:
    description: Known-hosts file pinning the primary's host key.
    type: path
  parallelism:
    description: Concurrent rsyncs.
    type: int
    default: 4
  bwlimit:
    description: rsync --bwlimit value (KiB/s), 0 for none.
    type: int
    default: 0
  inplace:
    description: Update large disk images in place (no temporary copy at DR).
    type: bool
    default: true
  checksum:
    description: Verify with checksums as well as file count and size.
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for a directory lock held by another sync.
    type: int
    default: 600
  metadata_dir:
    description: Directory on this host for VolumeSnapshot metadata documents.
    type: path
  archive_orphans:
    description: In periodic mode, archive DR directories that have no PV on the primary.
    type: bool
    default: false
  archive_retention_days:
    description: In periodic mode, purge archives older than this many days (0 keeps them).
    type: int
    default: 30
  delete_outright:
    description: In archive mode, delete the DR copy instead of archiving it (explicit opt-in).
    type: bool
    default: false
  snapshots_listed:
    description:
      - In periodic mode, false when listing the VolumeSnapshots failed; no metadata record is then
        written or removed (a failed listing never deletes anything).
    type: bool
    default: true
  max_delete_fraction:
    description:
      - In periodic mode, the largest share of metadata records (or, with archive_orphans, of DR
        directories) removed in one run; above it nothing is removed and the records are reported as held.
    type: float
    default: 0.5
  confirm_deletes:
    description: In periodic mode, remove even more than max_delete_fraction in this run.
    type: bool
    default: false
  drill_id:
    description:
      - In modes drill_prepare and drill_teardown, the drill's identifier (lower case letters, digits and C(-),
        at most 20 characters); the drill's directories are C(<dr_export_root>/.ocpdr-drills/<drill_id>/<rel>).
    type: str
  namespace_map:
    description:
      - In mode drill_prepare, drill namespace by source namespace; a namespace not in it maps to C(<ns>-drill).
    type: dict
    default: {}
  pvcs:
    description: In rewrite mode, PersistentVolumeClaims from a backup to clean for the DR cluster.
    type: list
    elements: dict
    default: []
  dr_server:
    description:
      - In rewrite mode, the DR NFS server address PVs must name; in snapshot_import mode (required) and snapshot_put,
        the server the rewritten snapshot handles name.
    type: str
author: ocpv-dr
"""

EXAMPLES = r"""
- name: Sync one PV
  ocpdr_sync:
    mode: sync
    pvs: ["{{ pv_object }}"]
    primary_server: 192.0.2.10
    primary_export_root: /srv/nfs
    dr_export_root: /srv/nfs
    ssh_key: /root/.ssh/ocpdr
"""

RETURN = r"""
results:
  description:
    - One entry per PV with name, server, primary_path, dr_path, status
      (synced, failed, refused, discrepancy, archived, mapped, rewritten), reason, files_transferred,
      bytes_transferred, changes, duration.
    - In sync, periodic and point modes also source (capture or live), source_path, consistency,
      capture_time (null for live copies), capture_status, and point (time, path, consistency) or
      point_error; warning when no point was kept.
    - In rewrite mode also point (a description), point_time, point_consistency, point_path, restored,
      archive_path.
  returned: when mode is not capture, capture_release, points or points_prune
  type: list
summary:
  description: Counts by status.
  returned: always
  type: dict
captures:
  description:
    - capture mode - one entry per PV with name, rel, path (on the primary; null unless ok), time (RFC 3339,
      microseconds, Z), method, status (ok, unsupported, failed, refused, skipped), reason, duration.
    - capture_release mode - one entry per PV with name, rel, status (released, held, refused, failed),
      kept and removed (capture names), reason.
  returned: in modes capture and capture_release
  type: list
points:
  description: One entry per PV with name, rel, status (listed, refused, failed), reason, points (manifests
    with path, oldest first), damaged (path, time, reason), incomplete (names).
  returned: in mode points
  type: list
retention:
  description: One entry per PV with rel, status (pruned, held, failed), kept, removed, removed_times,
    damaged, incomplete_removed, reason.
  returned: in modes periodic and points_prune
  type: list
points_kept:
  description:
    - Recovery points kept by this run. A point is kept at every verified sync, also one that moved no data;
      it does not make the task changed (changed reports data moved, archives and removals).
  returned: in modes sync, periodic and point
  type: int
drill:
  description:
    - drill_prepare - one entry per PV with name, rel, status (prepared, failed, skipped), reason, point_time,
      point_consistency, point_path, rpo_seconds (age of the point), drill_path, drill_pv, namespace, claim.
    - drill_teardown - path and removed (bool).
  returned: in modes drill_prepare and drill_teardown
  type: list
snapshots:
  description:
    - One entry per VolumeSnapshot with namespace, name, status (recorded, pending, failed, removed, absent; in
      snapshot_import importable, skipped, failed), reason, path; archive_status (copied, present, pending, failed,
      none) and archive_path for its csi-driver-nfs archive; in snapshot_delete archive_path (where it was archived).
  returned: in modes snapshot_put, snapshot_delete, periodic and snapshot_import
  type: list
objects:
  description: The VolumeSnapshotContents and VolumeSnapshots to create at DR.
  returned: in mode snapshot_import
  type: list
"""

import base64
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import ocpdr_points as rp
except ImportError:  # imported by path (pytest): the role's module_utils beside library/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
    import ocpdr_points as rp

try:
    from ansible.module_utils import ocpdr_snapshots as sn
except ImportError:  # imported by path (pytest), as above
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
    import ocpdr_snapshots as sn

# Test seam: p["local_transport"] (not a module option; set only by tests that
# call these functions directly) makes the "other host" this host - probes run
# here, rsync gets local paths, no SSH. Everything else is the production code.

MARKER = ".ocpdr-dr-active"
LOCK_DIR = rp.LOCK_DIR
ARCHIVE_PREFIX = "archived-"
HIDDEN_PREFIX = ".ocpdr"
# Anything a shell would interpret, plus control characters.
BAD_CHARS = re.compile(r"[;&|`$<>(){}\[\]*?!~'\"\\\s\x00-\x1f\x7f]")
CSI_DRIVER = "nfs.csi.k8s.io"
# Seconds retention waits for a PV's lock (a sync holding it): then it skips the PV this run.
PRUNE_LOCK_WAIT = 5

PROBE = r"""
import json, os, sys
req = json.load(sys.stdin)
extra = req.get("extra") or {}
for d in extra.get("mkdirs") or []:
    os.makedirs(d, mode=0o755, exist_ok=True)
out = {}
for m in extra.get("files") or []:
    out[m] = {"exists": os.path.exists(m)}
for p in req["paths"]:
    r = {"exists": False}
    try:
        real = os.path.realpath(p)
        r["real"] = real
        if os.path.isdir(p):
            r["exists"] = True
            files = size = 0
            for root, dirs, names in os.walk(p):
                for n in names:
                    try:
                        st = os.lstat(os.path.join(root, n))
                    except OSError:
                        continue
                    files += 1
                    size += st.st_size
            r["files"], r["bytes"] = files, size
    except OSError as e:
        r["error"] = str(e)
    out[p] = r
json.dump(out, sys.stdout)
"""


# DR-internal names, reserved at every depth: an archive is created beside the
# directory it archives (archived-<name>-<stamp>), which for nested paths is
# inside another PV's directory; .ocpdr* holds markers, locks and metadata.
ARCHIVE_RE = re.compile(r"^" + re.escape(ARCHIVE_PREFIX) + r".+-\d{8}T\d{6}Z$")
# rsync filters keeping those names out of every transfer and every --delete
# (an excluded name is neither sent nor deleted at the receiver).
RESERVED_FILTERS = [
    "--exclude=" + ARCHIVE_PREFIX + "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z/",
    "--exclude=" + HIDDEN_PREFIX + "*",
]


class Refused(Exception):
    pass


def reserved_name(part):
    """True for a path component DR uses for itself."""
    return part.startswith(HIDDEN_PREFIX) or part.startswith(ARCHIVE_PREFIX)


def obj_name(obj):
    """Name of a PV, or of an NFSDirectory event object (its path)."""
    if obj.get("kind") == "NFSDirectory":
        return str(obj.get("path", "?"))
    return (obj.get("metadata") or {}).get("name", "?")


def pv_source(pv):
    """Return (server, path) of an NFS PV, for spec.nfs and csi-driver-nfs, or of
    an NFSDirectory object (a data-write event from forwarder watch-exports)."""
    if pv.get("kind") == "NFSDirectory":
        if not pv.get("server") or not pv.get("path"):
            raise Refused("NFSDirectory object without server or path")
        return str(pv["server"]), str(pv["path"])
    spec = pv.get("spec") or {}
    nfs = spec.get("nfs")
    if nfs:
        return str(nfs.get("server", "")), str(nfs.get("path", ""))
    csi = spec.get("csi")
    if csi:
        if csi.get("driver") != CSI_DRIVER:
            raise Refused("CSI driver %r is not %s" % (csi.get("driver"), CSI_DRIVER))
        attrs = csi.get("volumeAttributes") or {}
        if attrs.get("server") and attrs.get("share"):
            path = attrs["share"].rstrip("/")
            if attrs.get("subdir"):
                path += "/" + attrs["subdir"]
            return str(attrs["server"]), path
        # The driver writes server#share#subdir#uuid#onDelete with the share
        # trimmed of slashes ("" for the root export), later fields optional.
        parts = str(csi.get("volumeHandle", "")).split("#")
        subdir = parts[2].strip("/") if len(parts) >= 3 else ""
        if len(parts) >= 2 and parts[0] and (parts[1].strip("/") or subdir):
            path = "/" + "/".join(x for x in (parts[1].strip("/"), subdir) if x)
            return parts[0], path
        raise Refused("csi-driver-nfs PV without server/share attributes or a server#share#subdir volumeHandle")
    raise Refused("not an NFS PV (no spec.nfs, no spec.csi)")


def check_path(path, root, what):
    if not path.startswith("/"):
        raise Refused("%s path %r is not absolute" % (what, path))
    if BAD_CHARS.search(path):
        raise Refused("%s path %r contains shell metacharacters or whitespace" % (what, path))
    if ".." in path.split("/"):
        raise Refused("%s path %r contains '..'" % (what, path))
    norm = os.path.normpath(path)
    root = os.path.normpath(root)
    if norm == root or not norm.startswith(root + "/"):
        raise Refused("%s path %r is outside the export root %s" % (what, path, root))
    return norm, os.path.relpath(norm, root)


def map_pv(pv, p, dr=True):
    """Map and validate a PV; dr=False (modes on the primary) skips the DR path."""
    entry = {"name": obj_name(pv), "status": "mapped", "reason": ""}
    server, path = pv_source(pv)
    entry["server"], entry["primary_path"] = server, path
    if server != p["primary_server"]:
        raise Refused("NFS server %r is not the configured primary NFS server %r" % (server, p["primary_server"]))
    norm, rel = check_path(path, p["primary_export_root"], "PV")
    if any(reserved_name(part) for part in rel.split("/")):
        raise Refused("PV path %r uses a name reserved for DR archives or metadata" % path)
    entry["primary_path"], entry["rel"] = norm, rel
    if not dr:
        return entry
    entry["dr_path"] = os.path.join(p["dr_export_root"], rel)
    # Symlink escape at DR: every existing component must stay under the root
    # (checked on the DR host: here when pulling, by the DR probe when pushing).
    if p.get("direction", "pull") == "pull":
        real_root = os.path.realpath(p["dr_export_root"])
        if not os.path.realpath(entry["dr_path"]).startswith(real_root + "/"):
            raise Refused("DR path %r resolves outside the DR export root" % entry["dr_path"])
    return entry


def ssh_argv(p):
    argv = ["ssh", "-p", str(p["ssh_port"]), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if p.get("ssh_control_persist", 0) > 0:
        # Reuse one authenticated connection for the probe and every rsync of
        # this and the next jobs: an SSH handshake costs more CPU than a
        # small incremental rsync.
        cm_dir = os.path.join(os.path.expanduser("~"), ".ssh")
        if not os.path.isdir(cm_dir):
            os.makedirs(cm_dir, 0o700)
        argv += ["-o", "ControlMaster=auto", "-o", "ControlPath=" + os.path.join(cm_dir, "ocpdr-cm-%C"),
                 "-o", "ControlPersist=%d" % p["ssh_control_persist"]]
    if p.get("ssh_key"):
        argv += ["-i", p["ssh_key"]]
    if p.get("known_hosts"):
        argv += ["-o", "UserKnownHostsFile=" + p["known_hosts"], "-o", "StrictHostKeyChecking=yes"]
    return argv


def run_probe(p, paths, remote, script=None, extra=None, force=False):
    """Run a probe script (stat directories; or prepare them) over the paths,
    locally with this Python or on the other host over one SSH call."""
    if not paths and not force:
        return {}
    script = script or PROBE
    payload = json.dumps({"paths": paths, "extra": extra or {}}).encode()
    if not remote or p.get("local_transport"):
        proc = subprocess.run([sys.executable, "-c", script], input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError("local probe failed: %s" % proc.stderr.decode(errors="replace").strip()[-500:])
        return json.loads(proc.stdout.decode())
    host = "%s@%s" % (p["ssh_user"], p.get("ssh_host") or p["primary_server"])
    code = "import base64;exec(base64.b64decode('%s'))" % base64.b64encode(script.encode()).decode()
    argv = ssh_argv(p) + [host, "/usr/bin/python3 -c " + shlex.quote(code)]
    proc = subprocess.run(argv, input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        what = "DR" if p.get("direction") == "push" else "primary"
        raise RuntimeError("cannot reach the %s NFS server over SSH: %s" % (what, proc.stderr.decode(errors="replace").strip()[-500:]))
    return json.loads(proc.stdout.decode())


def probe_primary(p, paths):
    """Stat primary directories: over SSH when pulling, here when pushing."""
    return run_probe(p, paths, remote=p.get("direction", "pull") == "pull")


def probe_dr(p, paths, extra=None):
    """Stat (and with extra, prepare) DR directories over SSH when pushing."""
    return run_probe(p, paths, remote=True, extra=extra, force=bool(extra))


def local_probe(path):
    """What the probe script reports for one local directory."""
    r = {"exists": os.path.isdir(path), "real": os.path.realpath(path)}
    if r["exists"]:
        r["files"], r["bytes"] = local_stats(path)
    return r


def local_stats(path):
    """(files, bytes) below path, counted as the verification counts them."""
    return rp.tree_stats(path)


# One lock implementation for both hosts (module_utils/ocpdr_points.py).
lock_path = rp.lock_path
Lock = rp.Lock


STAT_FILES = re.compile(r"Number of regular files transferred: ([\d,]+)")
STAT_BYTES = re.compile(r"Total transferred file size: ([\d,]+)")


def rsync_argv(p, src, dst, check_mode, lock_path=None, src_lock=None):
    """rsync from the primary directory src to the DR directory dst: pulling
    (src on the other host, the remote sender run under a shared flock on
    src_lock when src is a capture) or pushing (dst on the other host, the
    remote rsync run under flock on lock_path, the same lock a pull takes)."""
    local = p.get("local_transport")
    # --modify-window=-1: the quick check compares mtimes to the nanosecond. A
    # disk image keeps its size, so a write in the same second as the last
    # sync's would otherwise go unsent - and a point would not be its capture.
    argv = ["rsync", "-aHAXS", "--numeric-ids", "--protect-args", "--delete", "--itemize-changes", "--stats",
            "--modify-window=-1"]
    if not local:
        argv += ["-e", " ".join(ssh_argv(p))]
    argv += RESERVED_FILTERS
    if p["inplace"]:
        argv.append("--inplace")
    else:
        argv.append("--partial")
    if p["bwlimit"]:
        argv.append("--bwlimit=%d" % p["bwlimit"])
    if p["checksum"]:
        argv.append("--checksum")
    if check_mode:
        argv.append("--dry-run")
    if local:
        return argv + [src + "/", dst + "/"]
    host = "%s@%s" % (p["ssh_user"], p.get("ssh_host") or p["primary_server"])
    if p.get("direction", "pull") == "push":
        if lock_path:
            argv.append("--rsync-path=flock -w %d %s rsync" % (p["lock_timeout"], lock_path))
        return argv + [src + "/", "%s:%s/" % (host, dst)]
    if src_lock:
        argv.append("--rsync-path=flock -s -w %d %s rsync" % (p["lock_timeout"], src_lock))
    return argv + ["%s:%s/" % (host, src), dst + "/"]


def captures_root(p):
    return os.path.join(os.path.normpath(p["primary_export_root"]), rp.CAPTURES_DIR)


def capture_lock(p, entry):
    """The shared lock a sync from a capture holds on the primary (capture_release
    takes it exclusively): here when the primary is this host; a remote pull
    takes it in the remote rsync (--rsync-path), so nothing here."""
    here = p.get("direction", "pull") == "push" or p.get("local_transport")
    if entry.get("source") != "capture" or not here:
        return contextlib.ExitStack()
    return Lock(captures_root(p), entry["rel"], p["lock_timeout"], shared=True)


def add_warning(entry, msg):
    entry["warning"] = "; ".join(x for x in (entry.get("warning"), msg) if x)


def capture_source(p, entry, cap):
    """Validate a capture record for entry (it names a directory on the primary
    that rsync reads as root): <primary root>/.ocpdr-captures/<rel>/<stamp>."""
    path = str(cap.get("path") or "")
    base = os.path.join(captures_root(p), entry["rel"])
    if BAD_CHARS.search(path) or os.path.normpath(path) != path or os.path.dirname(path) != base \
            or not rp.STAMP_RE.match(os.path.basename(path)):
        raise Refused("capture path %r is not a capture of this PV (%s/<stamp>)" % (path, base))
    try:
        when = rp.parse_time(cap.get("time"))
    except ValueError as e:
        raise Refused("capture %s: %s" % (path, e))
    if rp.stamp(when) != os.path.basename(path):
        raise Refused("capture time %s does not match its path %s" % (cap.get("time"), path))
    level = cap.get("consistency") or "crash-consistent"
    if level not in rp.LEVELS:
        raise Refused("capture consistency %r is not one of %s" % (level, ", ".join(rp.LEVELS)))
    return {"path": path, "time": rp.rfc3339(when), "consistency": level, "method": cap.get("method"),
            "vms": list(cap.get("vms") or []), "frozen": list(cap.get("frozen") or []),
            "consistency_reason": str(cap.get("consistency_reason") or "")}


def capture_sources(p, entries):
    """{rel: validated capture} for the mapped entries whose capture is ok;
    sets capture_status on each, refuses an entry with a bad capture record."""
    by_rel = dict((c.get("rel"), c) for c in p.get("captures") or [] if isinstance(c, dict))
    out = {}
    for e in entries:
        if e["status"] != "mapped":
            continue
        cap = by_rel.get(e["rel"])
        e["capture_status"] = str(cap.get("status")) if cap else "none"
        if cap and cap.get("status") == "ok":
            try:
                out[e["rel"]] = capture_source(p, e, cap)
            except Refused as r:
                e.update(status="refused", reason=str(r))
    return out


def pick_source(entry, cap, probe):
    """(path, probe info) to sync entry from: its capture when it has one that
    still exists, else the live directory (consistency inconsistent)."""
    live = entry["primary_path"]
    entry.update(source="live", source_path=live, consistency="inconsistent", capture_time=None)
    if cap is None:
        return live, probe.get(live, {})
    info = probe.get(cap["path"], {})
    if not info.get("exists"):
        add_warning(entry, "capture %s is gone (released by a newer sync?): copied the live directory (inconsistent)" % cap["path"])
        return live, probe.get(live, {})
    entry.update(source="capture", source_path=cap["path"], consistency=cap["consistency"], capture_time=cap["time"],
                 capture_method=cap["method"], vms=cap["vms"], frozen=cap["frozen"], consistency_reason=cap["consistency_reason"])
    return cap["path"], info


def check_source(entry, src, info, dr, p):
    """The refusals of a sync, applied to the directory it reads."""
    real = info.get("real", src)
    if entry["source"] == "capture":
        if real != src:
            raise Refused("capture %s resolves to %s (symlink)" % (src, real))
    elif not real.startswith(os.path.normpath(p["primary_export_root"]) + "/"):
        raise Refused("primary path resolves outside the export root (symlink): %s" % real)
    if not info.get("exists"):
        raise Refused("primary directory %s is missing; not syncing, so the DR copy is kept" % src)
    dst = entry["dr_path"]
    if not dr.get("real", dst).startswith(os.path.normpath(p["dr_export_root"]) + "/"):
        raise Refused("DR path %r resolves outside the DR export root" % dst)
    dr_files = dr.get("files", 0) if dr.get("exists") else 0
    if info.get("files", 0) == 0 and dr_files > 0:
        raise Refused("primary directory %s is empty while the DR copy has %d files; not wiping DR" % (src, dr_files))


def run_rsync(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=24 * 3600)


def record_rsync(entry, proc, start):
    out = proc.stdout.decode(errors="replace")
    entry["rsync_rc"] = proc.returncode
    entry["changes"] = sum(1 for line in out.splitlines() if re.match(r"^[<>ch.*][fdLDS]", line) and not line.startswith(".d"))
    m = STAT_FILES.search(out)
    entry["files_transferred"] = int(m.group(1).replace(",", "")) if m else 0
    m = STAT_BYTES.search(out)
    entry["bytes_transferred"] = int(m.group(1).replace(",", "")) if m else 0
    entry["duration"] = round(time.time() - start, 3)
    if proc.returncode == 24:
        add_warning(entry, "some files vanished during transfer (rsync exit 24)")
    elif proc.returncode != 0:
        entry["status"] = "failed"
        entry["reason"] = "rsync exit %d: %s" % (proc.returncode, proc.stderr.decode(errors="replace").strip()[-500:])
        return
    entry["status"] = "synced"


def sync_one(entry, cap, probe, dr_probe, p, check_mode):
    start = time.time()
    src, info = pick_source(entry, cap, probe)
    dst = entry["dr_path"]
    check_source(entry, src, info, dr_probe.get(dst, {}), p)
    if p.get("direction", "pull") == "push":
        # The DR directory and the lock directory were made by the DR probe;
        # the remote rsync runs under the same per-directory flock a pull takes.
        argv = rsync_argv(p, src, dst, check_mode, lock_path(p["dr_export_root"], entry["rel"]))
        with capture_lock(p, entry):
            record_rsync(entry, run_rsync(argv), start)
            if entry["status"] == "synced" and entry["source"] == "capture" and not check_mode:
                fingerprint(entry, src)
        return entry
    if not check_mode:
        os.makedirs(dst, exist_ok=True)
    with Lock(p["dr_export_root"], entry["rel"], p["lock_timeout"]):
        src_lock = lock_path(captures_root(p), entry["rel"]) if entry["source"] == "capture" else None
        with capture_lock(p, entry):
            record_rsync(entry, run_rsync(rsync_argv(p, src, dst, check_mode, src_lock=src_lock)), start)
        if entry["status"] == "synced" and p.get("points", True) and not check_mode:
            # Verify and keep the point under the lock that made the copy:
            # nothing else can change the DR directory in between.
            if verify_here(p, entry, info):
                keep_point(p, entry)
    return entry


def fingerprint(entry, src):
    """After a push from a capture: the capture's tree fingerprint, which mode
    point compares with the DR copy before keeping it as this capture's point."""
    try:
        entry["source_tree"] = rp.tree_fingerprint(src)
    except OSError as e:
        add_warning(entry, "no fingerprint of capture %s: %s" % (src, e))


def set_verify(entry, src, files, size):
    entry["verify"] = {"primary_files": src.get("files"), "primary_bytes": src.get("bytes"), "dr_files": files, "dr_bytes": size}
    if src.get("files") != files or src.get("bytes") != size:
        entry["status"] = "discrepancy"
        entry["reason"] = "after sync: primary %s files/%s bytes, DR %d files/%d bytes (files changed during the sync?)" % (
            src.get("files"), src.get("bytes"), files, size)


def verify_here(p, entry, before):
    """Verify one pulled entry (under its lock); True when it is whole. A
    capture does not change, so its stats from before the sync stand; a live
    directory is probed again."""
    src = entry["source_path"]
    try:
        after = before if entry["source"] == "capture" else probe_primary(p, [src]).get(src, {})
    except Exception as e:  # noqa: BLE001 - reported on the entry
        entry["verify"] = "not verified: %s" % e
        entry["point_error"] = "no recovery point kept: the copy is not verified"
        add_warning(entry, entry["point_error"])
        return False
    set_verify(entry, after, *local_stats(entry["dr_path"]))
    return entry["status"] == "synced"


def keep_point(p, entry):
    """Keep the verified DR copy as a recovery point (the caller holds the lock)."""
    fields = {"pv": entry["name"], "time": entry.get("capture_time") or rp.rfc3339(rp.utcnow()),
              "consistency": entry.get("consistency", "inconsistent"), "capture_method": entry.get("capture_method"),
              "source": entry.get("source", "live"), "job": p.get("job_id"), "vms": entry.get("vms"), "frozen": entry.get("frozen"),
              "consistency_reason": entry.get("consistency_reason")}
    try:
        m = rp.make_point(p["dr_export_root"], entry["rel"], entry["dr_path"], fields, p["checksum"])
        entry["point"] = {"time": m["time"], "path": m["path"], "consistency": m["consistency"]}
    except rp.Unsupported:
        entry["point_error"] = rp.NO_REFLINK
        add_warning(entry, rp.NO_REFLINK)
    except (rp.PointError, OSError, ValueError) as e:
        entry["point_error"] = "no recovery point kept: %s" % e
        add_warning(entry, entry["point_error"])


def run_sync(p, entries, check_mode):
    """Sync mapped entries in parallel; fills status on each."""
    caps = capture_sources(p, entries)
    todo = [e for e in entries if e["status"] == "mapped"]
    push = p.get("direction", "pull") == "push"
    try:
        probe = probe_primary(p, [e["primary_path"] for e in todo] + [c["path"] for c in caps.values()])
        if push:
            dr_probe = probe_dr(p, [e["dr_path"] for e in todo])
            # Create the DR directories (and the lock directory) only for
            # entries that pass the checks sync_one makes, as a pull does.
            root = os.path.normpath(p["dr_export_root"]) + "/"
            make = [e["dr_path"] for e in todo if probe.get(e["primary_path"], {}).get("exists")
                    and dr_probe.get(e["dr_path"], {}).get("real", "").startswith(root)]
            if make and not check_mode:
                probe_dr(p, [], {"mkdirs": [os.path.join(p["dr_export_root"], LOCK_DIR)] + make})
        else:
            dr_probe = {e["dr_path"]: local_probe(e["dr_path"]) for e in todo}
    except Exception as e:  # noqa: BLE001 - reported per PV
        for entry in todo:
            entry.update(status="failed", reason=str(e))
        return

    def one(entry):
        try:
            sync_one(entry, caps.get(entry["rel"]), probe, dr_probe, p, check_mode)
        except Refused as r:
            entry.update(status="refused", reason=str(r))
        except Exception as e:  # noqa: BLE001 - reported per PV
            entry.update(status="failed", reason=str(e))

    with ThreadPoolExecutor(max_workers=max(1, p["parallelism"])) as pool:
        list(pool.map(one, todo))
    if check_mode:
        return
    # Entries verified under their lock (a point was due) are done.
    synced = [e for e in todo if e["status"] == "synced" and "verify" not in e]
    try:
        after = probe_primary(p, [e["source_path"] for e in synced])
        dr_after = probe_dr(p, [e["dr_path"] for e in synced]) if push else {}
    except Exception as e:  # noqa: BLE001
        for entry in synced:
            entry["verify"] = "not verified: %s" % e
        return
    for entry in synced:
        if push:
            d = dr_after.get(entry["dr_path"], {})
            files, size = d.get("files", 0), d.get("bytes", 0)
        else:
            files, size = local_stats(entry["dr_path"])
        set_verify(entry, after.get(entry["source_path"], {}), files, size)


def map_all(p, pvs, dr=True):
    entries = []
    for pv in pvs:
        try:
            entries.append(map_pv(pv, p, dr))
        except Refused as r:
            entries.append({"name": obj_name(pv), "status": "refused", "reason": str(r)})
    refuse_nested(entries)
    return entries


def refuse_nested(entries):
    """Refuse PVs whose directories contain one another: a sync of the outer
    one would also copy (and --delete) the inner one's DR directory."""
    mapped = sorted((e for e in entries if e["status"] == "mapped"), key=lambda e: e["rel"].split("/"))
    stack, nested = [], []
    for e in mapped:
        while stack and not e["rel"].startswith(stack[-1]["rel"] + "/"):
            stack.pop()
        if stack:
            nested.append((stack[-1], e))
        stack.append(e)
    for outer, inner in nested:
        for e, other in ((outer, inner), (inner, outer)):
            e.update(status="refused", reason="PV path %s and PV %s (%s) contain one another; give each PV its own directory"
                     % (e["primary_path"], other["name"], other["primary_path"]))


def fenced(p):
    marker = os.path.join(p["dr_export_root"], MARKER)
    if p.get("direction", "pull") == "push":
        return run_probe(p, [], remote=True, extra={"files": [marker]}, force=True).get(marker, {}).get("exists", False)
    return os.path.exists(marker)


def utc_stamp():
    return datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")


def archive_target(dst):
    """Where a DR directory is archived: archived-<name>-<UTC stamp> beside it
    (the next free second when an archive of this second exists)."""
    parent, base = os.path.split(dst)
    now = datetime.datetime.utcnow()
    for n in range(3600):
        target = os.path.join(parent, "%s%s-%s" % (ARCHIVE_PREFIX, base, (now + datetime.timedelta(seconds=n)).strftime("%Y%m%dT%H%M%SZ")))
        if not os.path.lexists(target):
            return target
    raise RuntimeError("no free archive name for %s" % dst)


def archive_dir(p, entry, check_mode):
    dst = entry["dr_path"]
    if not os.path.isdir(dst):
        entry.update(status="absent", reason="no DR copy at %s" % dst)
        return False
    if p["delete_outright"]:
        entry.update(status="deleted", reason="deleted outright (opt-in)")
        if not check_mode:
            with Lock(p["dr_export_root"], entry["rel"], p["lock_timeout"]):
                shutil.rmtree(dst)
        return True
    target = archive_target(dst)
    entry.update(status="archived", archive_path=target)
    if not check_mode:
        with Lock(p["dr_export_root"], entry["rel"], p["lock_timeout"]):
            os.rename(dst, target)
    return True


# ---------------------------------------------------------------- captures (primary NFS host)

def capture_options(p):
    return {"root": p["primary_export_root"], "method": p["capture_method"], "command": p["capture_command"],
            "lock_timeout": p["lock_timeout"], "timeout": p["capture_timeout"]}


def capture_all(p, entries, check_mode):
    """mode capture: one capture per PV (module_utils/ocpdr_points.py, the same
    code ocpdr_freeze runs over SSH when it captures between freeze and thaw)."""
    return rp.capture_entries(entries, capture_options(p), check_mode)


def release_one(p, rel, check_mode):
    """Remove all but the newest capture_keep captures of rel, unless a sync reads one now."""
    try:
        if not os.path.isdir(rp.captures_dir(p["primary_export_root"], rel)):
            return {"status": "released"}
        with Lock(rp.safe_dir(p["primary_export_root"], rp.CAPTURES_DIR), rel, 0):
            kept, removed = rp.release(p["primary_export_root"], rel, p["capture_keep"], check_mode)
        return {"status": "released", "kept": kept, "removed": removed}
    except RuntimeError:
        return {"status": "held", "reason": "a sync is reading a capture of this PV: nothing removed (the next release removes them)"}
    except (ValueError, OSError) as e:
        return {"status": "failed", "reason": str(e)}


def release_all(p, entries, check_mode):
    """mode capture_release, on the primary NFS host."""
    out = []
    for e in entries:
        rec = {"name": e["name"], "rel": e.get("rel"), "status": "refused", "reason": e.get("reason", ""), "kept": [], "removed": []}
        if e["status"] == "mapped":
            rec["reason"] = ""
            rec.update(release_one(p, e["rel"], check_mode))
        out.append(rec)
    return out


# ---------------------------------------------------------------- recovery points (DR NFS host)

def check_dr_entry(p, entry):
    """Validate a push result before keeping its point here (it came from the
    other host): its DR path is the mapping of its rel, under the DR root."""
    rel = str(entry.get("rel") or "")
    dst = os.path.join(p["dr_export_root"], rel)
    if not rel or entry.get("dr_path") != dst:
        raise Refused("sync result %r: dr_path %r is not the DR export root + rel %r" % (entry.get("name"), entry.get("dr_path"), rel))
    check_path(dst, p["dr_export_root"], "DR")
    if any(reserved_name(x) for x in rel.split("/")):
        raise Refused("DR path %r uses a name reserved for DR archives or metadata" % dst)
    if not os.path.realpath(dst).startswith(os.path.realpath(p["dr_export_root"]) + "/"):
        raise Refused("DR path %r resolves outside the DR export root" % dst)
    if entry.get("consistency") not in rp.LEVELS:
        raise Refused("sync result %r: consistency %r is not one of %s" % (entry.get("name"), entry.get("consistency"), ", ".join(rp.LEVELS)))
    if not isinstance(entry.get("verify"), dict):
        raise Refused("the push was not verified")


def point_after_push(p, entry):
    check_dr_entry(p, entry)
    with Lock(p["dr_export_root"], entry["rel"], p["lock_timeout"]):
        if entry.get("source") == "capture":
            if entry.get("capture_time"):
                rp.parse_time(entry["capture_time"])
            if not entry.get("source_tree") or rp.tree_fingerprint(entry["dr_path"]) != entry["source_tree"]:
                raise Refused("the DR copy does not match capture %s (another sync of this PV since the push?)" % entry.get("capture_time"))
        keep_point(p, entry)


def points_after_push(p, results, check_mode):
    """Keep the recovery points of a push sync's synced entries (mode point;
    periodic with sync_results). Returns the results, updated."""
    for e in results:
        if e.get("status") != "synced" or not p["points"] or check_mode:
            continue
        try:
            point_after_push(p, e)
        except (Refused, RuntimeError, OSError, ValueError) as err:
            e["point_error"] = "no recovery point kept: %s" % err
            add_warning(e, e["point_error"])
    return results


def catalogue_entries(p, pvs):
    """Entries (name, rel, status) for pvs, or for every PV in the catalogue when pvs is empty."""
    if pvs:
        return map_all(p, pvs)
    return [{"name": None, "rel": rel, "status": "mapped"} for rel in rp.catalogue_rels(p["dr_export_root"])]


def list_catalogue(p, entries):
    """mode points: the recovery points of each entry; never raises on a damaged point."""
    out = []
    for e in entries:
        rec = {"name": e["name"], "rel": e.get("rel"), "status": "refused", "reason": e.get("reason", ""),
               "points": [], "damaged": [], "incomplete": []}
        if e["status"] == "mapped":
            try:
                rec.update(rp.list_points(p["dr_export_root"], e["rel"]), status="listed", reason="")
            except (OSError, ValueError) as err:
                rec.update(status="failed", reason="cannot list the recovery points: %s" % err)
        if rec["name"] is None and rec["points"]:
            rec["name"] = rec["points"][-1].get("pv")
        out.append(rec)
    return out


def prune_all(p, rels, check_mode):
    """Retention (points_prune, periodic): per PV kept/removed counts; a PV whose
    catalogue cannot be listed, or whose lock a sync holds, loses nothing."""
    now, out = rp.utcnow(), []
    for rel in rels:
        try:
            with Lock(p["dr_export_root"], rel, min(p["lock_timeout"], PRUNE_LOCK_WAIT)):
                r = rp.prune(p["dr_export_root"], rel, now, p["points_keep_all_hours"], p["points_daily_days"], check_mode)
            r.update(status="pruned", reason="")
        except RuntimeError as e:
            r = {"rel": rel, "status": "held", "reason": "%s: nothing removed" % e}
        except (OSError, ValueError) as e:
            r = {"rel": rel, "status": "failed", "reason": "%s: nothing removed" % e}
        out.append(r)
    return out


def no_point_reason(spec, points):
    oldest = " (oldest point: %s)" % points[0]["time"] if points else " (no recovery points)"
    if spec == rp.SELECT_APP:
        return "no application-consistent recovery point" + oldest
    return "no recovery point at or before %s%s" % (spec, oldest)


def restore_pv(p, e, check_mode):
    """Select, and unless check mode restore, a rewritten PV's recovery point.
    False when the PV fails (it is then not applied at DR)."""
    spec = p["recovery_point"]
    if not p["use_points"]:
        e["point"] = "not used (use_points false): " + rp.WORKING_COPY
        return True
    try:
        cat = rp.list_points(p["dr_export_root"], e["rel"])
    except (OSError, ValueError) as err:
        e.update(status="failed", reason="cannot list the recovery points: %s" % err)
        return False
    pt = rp.select_point(cat["points"], spec)
    if pt is None:
        if spec == rp.SELECT_LATEST:
            e["point"] = rp.WORKING_COPY
            return True
        e.update(status="failed", reason=no_point_reason(spec, cat["points"]))
        return False
    e.update(point="%s (%s)" % (pt["time"], pt["consistency"]), point_time=pt["time"],
             point_consistency=pt["consistency"], point_path=pt["path"], restored=False)
    if check_mode:
        return True
    try:
        with Lock(p["dr_export_root"], e["rel"], p["lock_timeout"]):
            e["archive_path"] = rp.restore(pt, e["dr_path"], archive_target(e["dr_path"]))
        e["restored"] = True
        return True
    except (rp.PointError, OSError, RuntimeError) as err:
        e.update(status="failed", reason="cannot restore recovery point %s: %s" % (pt["time"], err))
        return False


def snapshot_doc(vs, pv_by_claim, p):
    md = vs.get("metadata") or {}
    spec = vs.get("spec") or {}
    status = vs.get("status") or {}
    src_pvc = (spec.get("source") or {}).get("persistentVolumeClaimName")
    doc = {
        "namespace": md.get("namespace"), "name": md.get("name"), "uid": md.get("uid"),
        "sourcePVC": src_pvc, "volumeSnapshotClassName": spec.get("volumeSnapshotClassName"),
        "boundVolumeSnapshotContentName": status.get("boundVolumeSnapshotContentName"),
        "snapshotHandle": status.get("snapshotHandle"), "creationTime": status.get("creationTime"),
        "restoreSize": status.get("restoreSize"), "readyToUse": status.get("readyToUse"),
        "labels": md.get("labels") or {}, "annotations": md.get("annotations") or {},
        "recordedAt": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    pv = pv_by_claim.get((md.get("namespace"), src_pvc))
    if pv:
        doc["sourcePV"] = (pv.get("metadata") or {}).get("name")
        try:
            doc["sourcePVDRPath"] = map_pv(pv, p)["dr_path"]
        except Refused:
            pass
    return doc


def safe_name(s):
    if not s or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", s):
        raise Refused("invalid Kubernetes name %r" % s)
    return s


def snapshot_path(p, vs):
    md = vs.get("metadata") or {}
    return os.path.join(p["metadata_dir"], safe_name(md.get("namespace")), safe_name(md.get("name")) + ".json")


def write_atomic(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    old = None
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if old is not None:
        try:
            o, n = json.loads(old), json.loads(data)
            o.pop("recordedAt", None)
            n.pop("recordedAt", None)
            if o == n:
                return False
        except ValueError:
            pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return True


# ---------------------------------------------------------------- VolumeSnapshot archives (csi-driver-nfs)

class ArchiveMissing(Exception):
    pass


def previous_archive(path):
    """The archive record of the metadata document already at DR ({} if none)."""
    try:
        with open(path) as f:
            return (json.load(f) or {}).get("archive") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def check_dr_dir(p, where):
    real_root = os.path.realpath(p["dr_export_root"])
    if not os.path.realpath(where["dr_dir"]).startswith(real_root + "/"):
        raise sn.BadHandle("DR snapshot directory %s resolves outside the DR export root" % where["dr_dir"])


def archive_probe(p, files, want_hash):
    """Stat (and with want_hash, sha256) the first existing archive on the primary."""
    return run_probe(p, files, remote=not p.get("local_transport"), script=sn.PROBE, extra={"hash": want_hash})


def archive_rsync_argv(p, src, dst):
    """Pull one archive from the primary (argv, never a shell). --ignore-times:
    it is only called when DR lacks the file or has a different one."""
    argv = ["rsync", "-a", "--ignore-times", "--protect-args"]
    if p["bwlimit"]:
        argv.append("--bwlimit=%d" % p["bwlimit"])
    if p.get("local_transport"):
        return argv + [src, dst]
    host = "%s@%s" % (p["ssh_user"], p.get("ssh_host") or p["primary_server"])
    return argv + ["-e", " ".join(ssh_argv(p)), "%s:%s" % (host, src), dst]


def copy_archive(p, info, dst, check_mode):
    """Copy the archive into place at DR unless DR has it with the same size
    and sha256 (archives never change once written). True when copied."""
    if os.path.isfile(dst) and not os.path.islink(dst) and os.path.getsize(dst) == info["size"] \
            and sn.sha256_file(dst) == info["sha256"]:
        return False
    if check_mode:
        return True
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # rsync writes a temporary file beside dst and renames it: no half archive at DR.
    proc = run_rsync(archive_rsync_argv(p, info["path"], dst))
    if proc.returncode != 0:
        raise RuntimeError("rsync of the archive %s exit %d: %s" % (info["path"], proc.returncode, proc.stderr.decode(errors="replace").strip()[-500:]))
    got = sn.sha256_file(dst)
    if got != info["sha256"]:
        raise RuntimeError("archive %s at DR has sha256 %s, the primary's is %s" % (dst, got, info["sha256"]))
    return True


def bound_handle(vs, vsc):
    """The content's csi-driver-nfs handle; None when the content is of another
    driver; "" while it is not ready. The content must point back at vs."""
    md, ref = vs.get("metadata") or {}, (vsc.get("spec") or {}).get("volumeSnapshotRef") or {}
    if (ref.get("namespace"), ref.get("name")) != (md.get("namespace"), md.get("name")):
        raise sn.BadHandle("VolumeSnapshotContent %s is bound to %s/%s, not to this VolumeSnapshot"
                           % ((vsc.get("metadata") or {}).get("name"), ref.get("namespace"), ref.get("name")))
    handle, why = sn.content_handle(vsc)
    if handle:
        return handle
    return "" if why == "pending" else None


def locate_archive(p, where, prev, handle):
    """Probe the primary for the archive; hash it unless the DR record of the
    same handle is trusted (no checksum option): immutable archives are
    re-hashed only when something differs."""
    trust = prev.get("status") == "replicated" and prev.get("handle") == handle and not p["checksum"]
    info = archive_probe(p, where["candidates"], want_hash=not trust)
    if not info.get("exists"):
        raise ArchiveMissing("snapshot archive missing on the primary NFS server (looked for %s)" % ", ".join(where["candidates"]))
    if not info.get("regular") or info.get("real") != info.get("path"):
        raise sn.BadHandle("snapshot archive %s on the primary is not a regular file (symlink?)" % info.get("path"))
    dst = where["dr_files"][info["path"]]
    if trust and prev.get("path") == dst and prev.get("size") == info["size"] and os.path.isfile(dst) \
            and not os.path.islink(dst) and os.path.getsize(dst) == info["size"]:
        info["sha256"] = prev.get("sha256")
        return info, dst, True
    if "sha256" not in info:
        info = archive_probe(p, [info["path"]], want_hash=True)
    return info, dst, False


def snapshot_archive(p, vs, vsc, doc_path, check_mode):
    """(archive record for the metadata document or None, copied)."""
    handle = bound_handle(vs, vsc)
    if handle is None:
        return None, False
    if not handle:
        return {"status": "pending"}, False
    snap = sn.parse_handle(handle)
    where = sn.archive_paths(snap, p["primary_server"], p["primary_export_root"], p["dr_export_root"])
    check_dr_dir(p, where)
    rec = {"status": "replicated", "handle": handle}
    if p.get("dr_server"):
        rec["dr_handle"] = sn.dr_handle(snap, p["dr_server"], where["dr_share"])
    info, dst, present = locate_archive(p, where, previous_archive(doc_path), handle)
    rec.update(primary_path=info["path"], path=dst, size=info["size"], sha256=info["sha256"])
    if present:
        return rec, False
    lock = contextlib.ExitStack() if check_mode else Lock(p["dr_export_root"], where["rel_dir"], p["lock_timeout"])
    with lock:
        return rec, copy_archive(p, info, dst, check_mode)


def put_archive(p, vs, vsc, doc_path, check_mode):
    """snapshot_archive, with every failure a failed record (reported, never raised)."""
    if vsc is None:
        return None, False
    try:
        return snapshot_archive(p, vs, vsc, doc_path, check_mode)
    except (sn.BadHandle, ArchiveMissing, RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        handle = ((vsc.get("status") or {}).get("snapshotHandle") or "")[:sn.MAX_HANDLE]
        return {"status": "failed", "reason": str(e), "handle": handle}, False


def archive_result(r, arc, copied):
    """Report the archive in a snapshot result."""
    if arc is None:
        r["archive_status"] = "none"
        return
    st = arc["status"]
    r["archive_status"] = "copied" if copied else ("present" if st == "replicated" else st)
    if arc.get("path"):
        r["archive_path"] = arc["path"]
    if st == "failed":
        r.update(status="failed", reason="snapshot archive: %s" % arc["reason"])


def content_map(contents):
    return dict(((c.get("metadata") or {}).get("name"), c) for c in contents or [] if isinstance(c, dict))


def put_one(p, vs, pv_by_claim, contents, check_mode):
    """Record one ready VolumeSnapshot (and copy its archive): (result, changed)."""
    md = vs.get("metadata") or {}
    r = {"namespace": md.get("namespace"), "name": md.get("name")}
    path = snapshot_path(p, vs)
    doc = snapshot_doc(vs, pv_by_claim, p)
    vsc = contents.get(doc.get("boundVolumeSnapshotContentName"))
    if vsc is not None:
        doc["snapshotHandle"] = (vsc.get("status") or {}).get("snapshotHandle") or doc.get("snapshotHandle")
    arc, copied = put_archive(p, vs, vsc, path, check_mode)
    if arc is not None:
        doc["archive"] = arc
    did = False if check_mode else write_atomic(path, json.dumps(doc, indent=2, sort_keys=True))
    r.update(status="recorded", path=path, changed=did or copied)
    archive_result(r, arc, copied)
    return r, did or copied or check_mode


def snapshots_put(p, snaps, pvs, check_mode):
    pv_by_claim = {}
    for pv in pvs:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        pv_by_claim[(ref.get("namespace"), ref.get("name"))] = pv
    contents = content_map(p.get("snapshot_contents"))
    results, changed = [], False
    for vs in snaps:
        md = vs.get("metadata") or {}
        r = {"namespace": md.get("namespace"), "name": md.get("name")}
        try:
            if not (vs.get("status") or {}).get("readyToUse"):
                r.update(status="pending", archive_status="pending", reason="not readyToUse yet: recorded when it becomes ready")
            else:
                r, did = put_one(p, vs, pv_by_claim, contents, check_mode)
                changed = changed or did
        except (Refused, OSError) as e:
            r.update(status="failed", reason=str(e))
        results.append(r)
    return results, changed


def archive_snapshot_dir(p, doc_path, check_mode):
    """Move a deleted snapshot's directory at DR aside, as PVs are archived
    (archived-<snapName>-<UTC stamp> beside it): never a hard delete. The
    directory is derived from the recorded handle, validated again."""
    arc = previous_archive(doc_path)
    if not arc.get("handle") or arc.get("status") == "failed":
        return None
    snap = sn.parse_handle(arc["handle"])
    where = sn.archive_paths(snap, p["primary_server"], p["primary_export_root"], p["dr_export_root"])
    d = where["dr_dir"]
    if not os.path.isdir(d) or os.path.islink(d):
        return None
    check_dr_dir(p, where)
    target = archive_target(d)
    if not check_mode:
        with Lock(p["dr_export_root"], where["rel_dir"], p["lock_timeout"]):
            os.rename(d, target)
    return target


def snapshots_delete(p, snaps, check_mode):
    results, changed = [], False
    for vs in snaps:
        md = vs.get("metadata") or {}
        r = {"namespace": md.get("namespace"), "name": md.get("name")}
        try:
            path = snapshot_path(p, vs)
            target = archive_snapshot_dir(p, path, check_mode)
            if target:
                r["archive_path"], changed = target, True
            if os.path.exists(path):
                if not check_mode:
                    os.remove(path)
                changed = True
                r.update(status="removed", path=path)
            else:
                r.update(status="absent", path=path)
        except (Refused, sn.BadHandle, OSError, RuntimeError) as e:
            r.update(status="failed", reason=str(e))
        results.append(r)
    return results, changed


def snapshot_tops(p):
    """Top-level DR directories holding snapshot archives (recorded or about
    to be): never orphans of the periodic sync."""
    handles = [(c.get("status") or {}).get("snapshotHandle") for c in p.get("snapshot_contents") or [] if isinstance(c, dict)]
    meta = p.get("metadata_dir")
    if meta and os.path.isdir(meta):
        for ns in os.listdir(meta):
            d = os.path.join(meta, ns)
            for f in os.listdir(d) if os.path.isdir(d) else []:
                handles.append(previous_archive(os.path.join(d, f)).get("handle") if f.endswith(".json") else None)
    tops = set()
    for h in handles:
        try:
            w = sn.archive_paths(sn.parse_handle(h), p["primary_server"], p["primary_export_root"], p["dr_export_root"])
            tops.add(w["rel_dir"].split("/")[0])
        except sn.BadHandle:
            continue
    return tops


def import_one(p, ns, fname):
    """The import record of one metadata document: (result, [VSC, VS])."""
    r = {"namespace": ns, "name": fname[:-5]}
    with open(os.path.join(p["metadata_dir"], ns, fname)) as f:
        doc = json.load(f)
    arc = doc.get("archive") or {}
    if (doc.get("namespace"), doc.get("name")) != (ns, r["name"]):
        raise sn.BadHandle("document %s/%s names %s/%s" % (ns, fname, doc.get("namespace"), doc.get("name")))
    if arc.get("status") != "replicated":
        r.update(status="skipped", reason="no replicated archive at DR (%s)" % arc.get("status", "metadata only"))
        return r, []
    snap = sn.parse_handle(arc.get("handle"))
    where = sn.archive_paths(snap, p["primary_server"], p["primary_export_root"], p["dr_export_root"])
    check_dr_dir(p, where)
    dst = arc.get("path")
    if dst not in where["dr_files"].values():
        raise sn.BadHandle("recorded DR path %r is not the archive of handle %s" % (dst, arc.get("handle")))
    if not os.path.isfile(dst) or os.path.islink(dst) or os.path.getsize(dst) != arc.get("size"):
        raise ArchiveMissing("archive %s missing at DR or not of the recorded size %s" % (dst, arc.get("size")))
    if p["checksum"] and sn.sha256_file(dst) != arc.get("sha256"):
        raise ArchiveMissing("archive %s at DR does not match its recorded sha256" % dst)
    dh = sn.dr_handle(snap, p["dr_server"], where["dr_share"])
    vsc, vs = sn.import_objects(doc, dh)
    r.update(status="importable", content=vsc["metadata"]["name"], dr_handle=dh, archive_path=dst)
    return r, [vsc, vs]


def snapshots_import(p, namespaces):
    """Pre-provisioned VolumeSnapshotContents and VolumeSnapshots for the
    replicated archives of the given namespaces (applied by the caller)."""
    results, objects = [], []
    for ns in namespaces:
        d = os.path.join(p["metadata_dir"], safe_name(ns))
        for fname in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not fname.endswith(".json"):
                continue
            try:
                r, objs = import_one(p, ns, fname)
            except (sn.BadHandle, ArchiveMissing, OSError, ValueError, AttributeError) as e:
                r, objs = {"namespace": ns, "name": fname[:-5], "status": "failed", "reason": str(e)}, []
            results.append(r)
            objects.extend(objs)
    return results, objects


def periodic(p, module):
    check = module.check_mode
    if p.get("sync_results") is not None:
        # Data already pushed from the primary: keep their recovery points, report them.
        entries = points_after_push(p, p["sync_results"], check)
    else:
        entries = map_all(p, p["pvs"])
        run_sync(p, entries, check)
    retention = catalogue_retention(p, check)
    known = set(e["rel"].split("/")[0] for e in entries if e.get("rel")) | snapshot_tops(p)
    root = p["dr_export_root"]
    dirs = [n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)) and not reserved_name(n)]
    held = deletions_held(p, len([n for n in dirs if n not in known]), len(dirs)) if p["archive_orphans"] else ""
    orphans, purged = [], []
    now = datetime.datetime.utcnow()
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        if not os.path.isdir(full) or name.startswith("."):
            continue
        if name.startswith(ARCHIVE_PREFIX):
            m = re.search(r"-(\d{8}T\d{6}Z)$", name)
            if m and p["archive_retention_days"] > 0:
                age = now - datetime.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ")
                if age.days >= p["archive_retention_days"]:
                    purged.append(name)
                    if not check:
                        shutil.rmtree(full)
            continue
        if name not in known:
            o = {"path": full, "archived": False}
            if p["archive_orphans"] and not check and not held:
                target = os.path.join(root, "%s%s-%s" % (ARCHIVE_PREFIX, name, utc_stamp()))
                os.rename(full, target)
                o.update(archived=True, archive_path=target)
            elif held:
                o["reason"] = held
            orphans.append(o)
    if not p["snapshots_listed"]:
        # A failed listing says nothing about which snapshots exist: touch no record.
        return entries, [], orphans, purged, retention
    snaps, _ = snapshots_put(p, p["snapshots"], p["pvs"], check)
    snaps.extend(reconcile_metadata(p, check))
    return entries, snaps, orphans, purged, retention


def catalogue_retention(p, check_mode):
    """Retention over every PV in the catalogue (also of PVs gone from the primary)."""
    try:
        rels = rp.catalogue_rels(p["dr_export_root"])
    except (OSError, ValueError) as e:
        return [{"rel": None, "status": "failed", "reason": "cannot list the recovery points: %s: nothing removed" % e}]
    return prune_all(p, rels, check_mode)


def stale_metadata(p):
    """Metadata records at DR without a live VolumeSnapshot, and the count of all."""
    live = set()
    for vs in p["snapshots"]:
        md = vs.get("metadata") or {}
        live.add((md.get("namespace"), md.get("name")))
    meta, stale, total = p["metadata_dir"], [], 0
    if not meta or not os.path.isdir(meta):
        return stale, total
    for ns in sorted(os.listdir(meta)):
        d = os.path.join(meta, ns)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith(".json"):
                total += 1
                if (ns, f[:-5]) not in live:
                    stale.append((ns, f[:-5], os.path.join(d, f)))
    return stale, total


def deletions_held(p, n, total):
    """Reason to hold n of total deletions, or "" to go ahead: more than
    max_delete_fraction of the records at once needs confirm_deletes."""
    if n == 0 or p["confirm_deletes"] or n <= p["max_delete_fraction"] * total:
        return ""
    return ("%d of %d records would go at once (more than %d%%): kept; check the listing (RBAC?) and confirm with "
            "confirm_deletes for this run" % (n, total, round(p["max_delete_fraction"] * 100)))


def reconcile_metadata(p, check):
    stale, total = stale_metadata(p)
    held = deletions_held(p, len(stale), total)
    out = []
    for ns, name, path in stale:
        if held:
            out.append({"namespace": ns, "name": name, "status": "held", "reason": held})
            continue
        r = {"namespace": ns, "name": name, "status": "removed", "reason": "no such VolumeSnapshot on the primary"}
        try:
            # A missed delete event: its archive at DR is archived, as by snapshot_delete.
            target = archive_snapshot_dir(p, path, check)
        except (sn.BadHandle, OSError, RuntimeError) as e:
            r.update(status="failed", reason="cannot archive the snapshot's archive at DR: %s" % e)
            out.append(r)
            continue
        if target:
            r["archive_path"] = target
        if not check:
            os.remove(path)
        out.append(r)
    return out


CLUSTER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")
BIND_ANNOTATIONS = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller", "kubectl.kubernetes.io/last-applied-configuration")


def clean_meta(obj):
    md = dict(obj.get("metadata") or {})
    for f in CLUSTER_FIELDS:
        md.pop(f, None)
    ann = dict(md.get("annotations") or {})
    for a in BIND_ANNOTATIONS:
        ann.pop(a, None)
    md["annotations"] = ann
    labels = dict(md.get("labels") or {})
    labels["ocpv-dr.io/restored"] = "true"
    md["labels"] = labels
    return md


def rewrite(p, pvs, pvcs, check_mode=False):
    """Restore each NFS PV's recovery point at DR; rewrite the PVs to the DR
    server and mapped path (not a PV whose restore failed); clean PVCs."""
    out_pvs, entries = [], []
    for pv in pvs:
        name = (pv.get("metadata") or {}).get("name", "?")
        try:
            e = map_pv(pv, p)
        except Refused as r:
            entries.append({"name": name, "status": "skipped", "reason": str(r)})
            continue
        entries.append(e)
        if not restore_pv(p, e, check_mode):
            continue
        spec = json.loads(json.dumps(pv.get("spec") or {}))
        if spec.get("nfs"):
            spec["nfs"] = {"server": p["dr_server"], "path": e["dr_path"], "readOnly": spec["nfs"].get("readOnly", False)}
        else:
            csi = spec["csi"]
            attrs = dict(csi.get("volumeAttributes") or {})
            share = attrs.get("share") or "/" + str(csi.get("volumeHandle", "")).split("#")[1]
            _, share_rel = check_path(share.rstrip("/") + "/x", p["primary_export_root"], "share")
            share_rel = os.path.dirname(share_rel)
            new_share = os.path.join(p["dr_export_root"], share_rel) if share_rel else p["dr_export_root"]
            attrs["server"], attrs["share"] = p["dr_server"], new_share
            csi["volumeAttributes"] = attrs
            parts = str(csi.get("volumeHandle", "")).split("#")
            if len(parts) >= 2:
                parts[0], parts[1] = p["dr_server"], new_share.lstrip("/")
                csi["volumeHandle"] = "#".join(parts)
        spec["persistentVolumeReclaimPolicy"] = "Retain"
        if spec.get("claimRef"):
            ref = spec["claimRef"]
            spec["claimRef"] = {k: ref[k] for k in ("apiVersion", "kind", "namespace", "name") if k in ref}
        out_pvs.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": clean_meta(pv), "spec": spec})
        e["status"] = "rewritten"
    out_pvcs = []
    for pvc in pvcs:
        spec = json.loads(json.dumps(pvc.get("spec") or {}))
        out_pvcs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": clean_meta(pvc), "spec": spec})
    return entries, out_pvs, out_pvcs


# ---------------------------------------------------------------- drill (docs/lifecycle.md)

DRILL_MODES = ("drill_prepare", "drill_teardown")
DRILLS_DIR = ".ocpdr-drills"
DRILL_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")
DRILL_LABEL = "ocpv-dr.io/drill"


def drill_problem(p):
    """Why the drill parameters do not suit, or None."""
    if not DRILL_ID_RE.match(p.get("drill_id") or ""):
        return "drill_id must be 1-20 lower case letters, digits and '-' (not at either end)"
    if p["mode"] == "drill_prepare":
        if not p["dr_server"]:
            return "dr_server is required for mode drill_prepare"
        try:
            rp.check_spec(p["recovery_point"])
        except ValueError:
            return "recovery_point %r is not latest, latest-application-consistent or an RFC 3339 time" % p["recovery_point"]
    return None


def drill_namespace(p, ns):
    return str((p.get("namespace_map") or {}).get(ns) or ns + "-drill")


def drill_root(p):
    return rp.safe_dir(p["dr_export_root"], DRILLS_DIR, p["drill_id"])


def drill_pv_name(pv_name, drill_id):
    suffix = "-drill-" + drill_id
    return pv_name[:253 - len(suffix)] + suffix


def drill_objects(p, pv, e):
    """The drill's PV (in-tree NFS on the DR server, Retain, bound to the
    drill claim) and PVC (drill namespace, same claim name)."""
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    labels = {DRILL_LABEL: p["drill_id"], "ocpv-dr.io/drill-source": e["name"][:63]}
    pv_spec = {k: json.loads(json.dumps(spec[k])) for k in ("capacity", "accessModes", "volumeMode", "mountOptions", "storageClassName") if k in spec}
    pv_spec.update(nfs={"server": p["dr_server"], "path": e["drill_path"]}, persistentVolumeReclaimPolicy="Retain",
                   claimRef={"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": e["namespace"], "name": ref["name"]})
    pvc_spec = {"accessModes": spec.get("accessModes") or ["ReadWriteMany"], "volumeName": e["drill_pv"],
                "resources": {"requests": {"storage": (spec.get("capacity") or {}).get("storage", "1Gi")}},
                "storageClassName": spec.get("storageClassName", "")}
    if spec.get("volumeMode"):
        pvc_spec["volumeMode"] = spec["volumeMode"]
    return ({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": e["drill_pv"], "labels": labels}, "spec": pv_spec},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": ref["name"], "namespace": e["namespace"], "labels": labels}, "spec": pvc_spec})


DRILL_RECORD = ".ocpdr-drill.json"


def drill_record(p):
    """{rel: point (time, consistency, path)} of the drill's clones, so that a
    re-run reports the point a kept directory holds, not a newer one."""
    try:
        with open(os.path.join(drill_root(p), DRILL_RECORD)) as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def drill_remember(p, rel, pt):
    rec = drill_record(p)
    rec[rel] = {"time": pt["time"], "consistency": pt["consistency"], "path": pt["path"]}
    rp.write_json(os.path.join(drill_root(p), DRILL_RECORD), rec)


def drill_clone(p, e, pt, check_mode):
    """Reflink-clone the point's data/ to the drill directory (made whole
    by a rename; an existing one, from an earlier run, is kept)."""
    dst = rp.safe_dir(drill_root(p), e["rel"])
    e["drill_path"] = dst
    if check_mode or os.path.isdir(dst):
        return
    os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
    partial = dst + rp.PARTIAL
    rp.remove_any(partial)
    with Lock(p["dr_export_root"], e["rel"], p["lock_timeout"]):
        rp.clone(os.path.join(pt["path"], "data"), partial)
    os.rename(partial, dst)
    rp.fsync_dir(os.path.dirname(dst))
    drill_remember(p, e["rel"], pt)


def drill_entry(p, pv, now, check_mode):
    """One PV of the drill: its point chosen and cloned, or why not."""
    e = {"name": obj_name(pv), "status": "skipped", "reason": ""}
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if p["namespaces"] and ref.get("namespace") not in p["namespaces"]:
        e["reason"] = "not bound to a claim in the drill's namespaces"
        return e
    try:
        e.update(map_pv(pv, p))
        if not ref.get("name") or not ref.get("namespace"):
            raise Refused("PV has no claimRef: nothing to restore it for")
        pt = drill_record(p).get(e["rel"])
        if pt is None or not os.path.isdir(rp.safe_dir(drill_root(p), e["rel"])):
            cat = rp.list_points(p["dr_export_root"], e["rel"])
            pt = rp.select_point(cat["points"], p["recovery_point"])
        if pt is None:
            raise Refused(no_point_reason(p["recovery_point"], cat["points"]) if p["recovery_point"] != rp.SELECT_LATEST
                          else "no recovery point: a drill starts only from a recovery point")
        e.update(point_time=pt["time"], point_consistency=pt["consistency"], point_path=pt["path"],
                 rpo_seconds=round((now - rp.parse_time(pt["time"])).total_seconds(), 3),
                 namespace=drill_namespace(p, ref["namespace"]), source_namespace=ref["namespace"], claim=ref["name"],
                 drill_pv=drill_pv_name(e["name"], p["drill_id"]))
        drill_clone(p, e, pt, check_mode)
    except (Refused, rp.PointError, OSError, ValueError, RuntimeError) as err:
        e.update(status="failed", reason=str(err))
        return e
    e.update(status="prepared", reason="")
    return e


def drill_prepare(p, pvs, check_mode=False):
    """(entries, pvs, pvcs) of a drill: every PV's point cloned under
    <dr_export_root>/.ocpdr-drills/<drill_id>/; nothing else is touched."""
    now, entries, out_pvs, out_pvcs = rp.utcnow(), [], [], []
    by_name = {obj_name(pv): pv for pv in pvs}
    for pv in pvs:
        e = drill_entry(p, pv, now, check_mode)
        entries.append(e)
        if e["status"] == "prepared":
            new_pv, new_pvc = drill_objects(p, by_name[e["name"]], e)
            out_pvs.append(new_pv)
            out_pvcs.append(new_pvc)
    return entries, out_pvs, out_pvcs


def drill_teardown(p, check_mode=False):
    """Remove the drill's directories (renamed .deleting first)."""
    path = drill_root(p)
    exists = os.path.lexists(path)
    if exists and not check_mode:
        rp.remove_tree(path)
    return {"path": path, "removed": exists}


def run_drill_mode(module, p):
    if p["mode"] == "drill_teardown":
        r = drill_teardown(p, module.check_mode)
        module.exit_json(changed=r["removed"], drill=[r])
    if fenced(p):
        module.fail_json(msg="the DR site is active (%s exists): no drill while it is failed over" % MARKER, fenced=True)
    entries, pvs, pvcs = drill_prepare(p, p["pvs"], module.check_mode)
    module.exit_json(changed=any(e["status"] == "prepared" for e in entries) and not module.check_mode,
                     drill=entries, summary=summarize(entries), pvs=pvs, pvcs=pvcs)

def summarize(entries):
    s = {}
    for e in entries:
        s[e["status"]] = s.get(e["status"], 0) + 1
    s["total"] = len(entries)
    s["bytes_transferred"] = sum(e.get("bytes_transferred", 0) for e in entries)
    s["files_transferred"] = sum(e.get("files_transferred", 0) for e in entries)
    return s


MODES = ["map", "sync", "archive", "snapshot_put", "snapshot_delete", "periodic", "rewrite",
         "capture", "capture_release", "point", "points", "points_prune", "snapshot_import"] + list(DRILL_MODES)
# Modes that run on the primary NFS server whatever the direction (no DR root needed).
PRIMARY_MODES = ("capture", "capture_release")


def argument_spec():
    return dict(
        mode=dict(type="str", required=True, choices=MODES),
        pvcs=dict(type="list", elements="dict", default=[]),
        dr_server=dict(type="str"),
        pvs=dict(type="list", elements="dict", default=[]),
        snapshots=dict(type="list", elements="dict", default=[]),
        snapshot_contents=dict(type="list", elements="dict", default=[]),
        namespaces=dict(type="list", elements="str", default=[]),
        primary_server=dict(type="str", required=True),
        primary_export_root=dict(type="path", required=True),
        dr_export_root=dict(type="path"),
        ssh_host=dict(type="str"),
        ssh_port=dict(type="int", default=22),
        ssh_control_persist=dict(type="int", default=60),
        direction=dict(type="str", default="pull", choices=["pull", "push"]),
        sync_results=dict(type="list", elements="dict"),
        ssh_user=dict(type="str", default="root"),
        ssh_key=dict(type="path", no_log=False),
        known_hosts=dict(type="path"),
        parallelism=dict(type="int", default=4),
        bwlimit=dict(type="int", default=0),
        inplace=dict(type="bool", default=True),
        checksum=dict(type="bool", default=False),
        lock_timeout=dict(type="int", default=600),
        metadata_dir=dict(type="path"),
        archive_orphans=dict(type="bool", default=False),
        archive_retention_days=dict(type="int", default=30),
        delete_outright=dict(type="bool", default=False),
        snapshots_listed=dict(type="bool", default=True),
        max_delete_fraction=dict(type="float", default=0.5),
        confirm_deletes=dict(type="bool", default=False),
        captures=dict(type="list", elements="dict", default=[]),
        points=dict(type="bool", default=True),
        job_id=dict(type="str", default=""),
        capture_method=dict(type="str", default="reflink", choices=["reflink", "command", "none"]),
        capture_command=dict(type="list", elements="str"),
        capture_timeout=dict(type="int", default=0),
        capture_keep=dict(type="int", default=1),
        points_keep_all_hours=dict(type="int", default=24),
        points_daily_days=dict(type="int", default=7),
        recovery_point=dict(type="str", default="latest"),
        use_points=dict(type="bool", default=True),
        drill_id=dict(type="str"),
        namespace_map=dict(type="dict", default={}),
    )


def bad_roots(p):
    """Why the export roots do not suit the mode (on this host), or None."""
    mode = p["mode"]
    keys = ("primary_export_root",) if mode in PRIMARY_MODES else ("primary_export_root", "dr_export_root")
    for key in keys:
        if not p[key] or not os.path.isabs(p[key]) or p[key] == "/":
            return "%s must be an absolute directory other than /" % key
    if mode in PRIMARY_MODES:
        if not os.path.isdir(p["primary_export_root"]):
            return "primary export root %s does not exist on this host (mode %s runs on the primary NFS server)" % (p["primary_export_root"], mode)
        return None
    if p["direction"] == "push" and mode != "point":
        if mode not in ("map", "sync"):
            return "direction push applies to mode sync; mode %s runs on the DR NFS server" % mode
        if not os.path.isdir(p["primary_export_root"]):
            return "primary export root %s does not exist on this host (push runs on the primary NFS server)" % p["primary_export_root"]
    elif mode not in ("map", "rewrite") and not os.path.isdir(p["dr_export_root"]):
        return "DR export root %s does not exist on this host" % p["dr_export_root"]
    return None


def bad_params(p):
    """Why the parameters do not suit the mode, or None."""
    why = bad_roots(p)
    if why:
        return why
    mode = p["mode"]
    if mode in ("snapshot_put", "snapshot_delete", "periodic", "snapshot_import") and not p["metadata_dir"]:
        return "metadata_dir is required for mode %s" % mode
    if mode == "snapshot_import" and not p["dr_server"]:
        return "dr_server is required for mode snapshot_import"
    if mode == "capture" and p["capture_method"] == "command" and not p["capture_command"]:
        return "capture_command is required with capture_method command"
    if mode in DRILL_MODES and drill_problem(p):
        return drill_problem(p)
    if mode == "point" and p["sync_results"] is None:
        return "sync_results (the results of the push sync) is required for mode point"
    if mode == "rewrite":
        if not p["dr_server"]:
            return "dr_server is required for mode rewrite"
        try:
            rp.check_spec(p["recovery_point"])
        except ValueError:
            return "recovery_point %r is not latest, latest-application-consistent or an RFC 3339 time" % p["recovery_point"]
    if p["capture_keep"] < 1 or p["points_keep_all_hours"] < 0 or p["points_daily_days"] < 0 or p["capture_timeout"] < 0:
        return "capture_keep must be at least 1; points_keep_all_hours, points_daily_days and capture_timeout not negative"
    return None


def points_kept(entries):
    """Recovery points kept by this run. Not counted as a change: a point is
    kept at every verified sync, also one that moved no data (so an idle PV's
    achieved recovery point keeps up), and a sync that moved nothing stays
    changed=false."""
    return sum(1 for e in entries if e.get("point"))


def exit_fenced(module, p):
    entries = map_all(p, p["pvs"])
    for e in entries:
        if e["status"] == "mapped":
            e.update(status="refused", reason="the DR site is active (%s exists): not pulling from the old primary" % MARKER)
    module.exit_json(changed=False, fenced=True, results=entries, summary=summarize(entries), snapshots=[], orphans=[], purged=[], retention=[])


def run_primary_mode(module, p):
    entries = map_all(p, p["pvs"], dr=False)
    if p["mode"] == "capture":
        caps = capture_all(p, entries, module.check_mode)
        module.exit_json(changed=any(c["status"] == "ok" for c in caps), captures=caps, summary=summarize(caps))
    rel = release_all(p, entries, module.check_mode)
    module.exit_json(changed=any(r.get("removed") for r in rel), captures=rel, summary=summarize(rel))


def run_points_mode(module, p):
    mode, check = p["mode"], module.check_mode
    if mode == "point":
        entries = points_after_push(p, p["sync_results"], check)
        module.exit_json(changed=False, results=entries, summary=summarize(entries), points_kept=points_kept(entries))
    try:
        entries = catalogue_entries(p, p["pvs"])
    except (OSError, ValueError) as e:
        module.fail_json(msg="cannot list the recovery points: %s" % e)
    if mode == "points":
        cat = list_catalogue(p, entries)
        module.exit_json(changed=False, points=cat, summary=summarize(cat))
    refused = [{"rel": e.get("rel"), "name": e["name"], "status": "refused", "reason": e["reason"]} for e in entries if e["status"] != "mapped"]
    res = refused + prune_all(p, [e["rel"] for e in entries if e["status"] == "mapped"], check)
    module.exit_json(changed=any(r.get("removed") or r.get("incomplete_removed") for r in res), retention=res, summary=summarize(res))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    why = bad_params(p)
    if why:
        module.fail_json(msg=why)
    mode, check = p["mode"], module.check_mode

    if mode in PRIMARY_MODES:
        run_primary_mode(module, p)

    if mode in ("point", "points", "points_prune"):
        run_points_mode(module, p)

    if mode in DRILL_MODES:
        run_drill_mode(module, p)

    if mode == "map":
        entries = map_all(p, p["pvs"])
        module.exit_json(changed=False, results=entries, summary=summarize(entries))

    if mode == "rewrite":
        entries, pvs, pvcs = rewrite(p, p["pvs"], p["pvcs"], check)
        module.exit_json(changed=any(e.get("restored") for e in entries), results=entries, summary=summarize(entries), pvs=pvs, pvcs=pvcs)

    if mode in ("sync", "periodic") and p.get("sync_results") is None and fenced(p):
        exit_fenced(module, p)

    if mode == "sync":
        entries = map_all(p, p["pvs"])
        run_sync(p, entries, check)
        changed = any(e.get("changes", 0) > 0 for e in entries)
        module.exit_json(changed=changed, results=entries, summary=summarize(entries), points_kept=points_kept(entries))

    if mode == "archive":
        entries = map_all(p, p["pvs"])
        changed = False
        for e in entries:
            if e["status"] == "mapped":
                changed = archive_dir(p, e, check) or changed
        module.exit_json(changed=changed, results=entries, summary=summarize(entries))

    if mode == "snapshot_put":
        res, changed = snapshots_put(p, p["snapshots"], p["pvs"], check)
        module.exit_json(changed=changed, snapshots=res)

    if mode == "snapshot_delete":
        res, changed = snapshots_delete(p, p["snapshots"], check)
        module.exit_json(changed=changed, snapshots=res)

    if mode == "snapshot_import":
        res, objects = snapshots_import(p, p["namespaces"])
        module.exit_json(changed=False, snapshots=res, objects=objects)

    entries, snaps, orphans, purged, retention = periodic(p, module)
    changed = (any(e.get("changes", 0) > 0 for e in entries) or bool(purged)
               or any(o["archived"] for o in orphans) or any(r.get("removed") for r in retention))
    module.exit_json(changed=changed, results=entries, summary=summarize(entries), snapshots=snaps, orphans=orphans,
                     purged=purged, retention=retention, points_kept=points_kept(entries))


if __name__ == "__main__":
    main()
