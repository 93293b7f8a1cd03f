# -*- coding: utf-8 -*-
# ocpv-dr: captures (primary) and recovery points (DR) of PV directories.
# Standard library only, no Ansible: the ocpdr_sync module imports it as
# ansible.module_utils.ocpdr_points (role module_utils), pytest by path.
# Design: docs/recovery-points.md.
"""Reflink captures, recovery points, their catalogue, retention and selection."""

from __future__ import absolute_import, division, print_function

import datetime
import errno
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

__metaclass__ = type

CAPTURES_DIR = ".ocpdr-captures"
POINTS_DIR = ".ocpdr-points"
RESTORE_PREFIX = ".ocpdr-restore-"
PARTIAL = ".partial"
TRASH = ".deleting"
MANIFEST = "manifest.json"
STAMP_FMT = "%Y%m%dT%H%M%S.%fZ"
STAMP_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
# A whole, partial (being written) or deleting capture or point.
ENTRY_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z(\.partial|\.deleting)*$")
RFC3339_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
LEVELS = ("application-consistent", "crash-consistent", "inconsistent")
SELECT_LATEST = "latest"
SELECT_APP = "latest-application-consistent"
NO_REFLINK = "DR filesystem has no reflink: no recovery point kept"
WORKING_COPY = "none (working copy, consistency unknown)"
# cp's messages when the filesystem cannot clone: EOPNOTSUPP, EINVAL (XFS
# without reflink=1, some NFS), EXDEV (source and target on two filesystems).
UNSUPPORTED = ("Operation not supported", "Invalid argument", "Invalid cross-device link", "EOPNOTSUPP")
# Names rsync never sends nor deletes (ocpdr_sync RESERVED_FILTERS); the tree
# fingerprint skips them too, so the DR copy compares with its source.
ARCHIVE_DIR_RE = re.compile(r"^archived-.+-\d{8}T\d{6}Z$")
UTC = datetime.timezone.utc


class PointError(Exception):
    """A point (or capture, or restore) that could not be made."""


class Unsupported(PointError):
    """The filesystem has no reflink."""


# ---------------------------------------------------------------- time

def utcnow():
    return datetime.datetime.now(UTC)


def stamp(dt):
    """Directory name of a capture or point: UTC YYYYMMDDTHHMMSS.ffffffZ."""
    return dt.astimezone(UTC).strftime(STAMP_FMT)


def rfc3339(dt):
    """UTC RFC 3339 with microseconds: 2026-12-02T11:00:00.123456Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp_time(s):
    return datetime.datetime.strptime(s, STAMP_FMT).replace(tzinfo=UTC)


def parse_time(s):
    """An RFC 3339 time (Z or offset, optional fraction) as an aware datetime;
    ValueError when s is not one. (No fromisoformat: Python 3.6 on NFS hosts.)"""
    m = RFC3339_RE.match(str(s).strip())
    if not m:
        raise ValueError("not an RFC 3339 time: %r" % (s,))
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if tz in ("Z", "z"):
        off = UTC
    else:
        sign = 1 if tz[0] == "+" else -1
        off = datetime.timezone(sign * datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    return datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tzinfo=off).astimezone(UTC)


# ---------------------------------------------------------------- paths

def safe_dir(root, *parts):
    """root/parts..., refusing (ValueError) when an existing component is a
    symlink: every DR/primary-internal directory must be where it says."""
    path = os.path.join(root, *parts)
    want = os.path.join(os.path.realpath(root), *parts)
    if os.path.realpath(path) != want:
        raise ValueError("%s resolves to %s (a symlink?): refused" % (path, os.path.realpath(path)))
    return path


def top_dir(root, name):
    """<root>/.ocpdr-captures or .ocpdr-points, made 0700 when missing: it is
    inside an NFS export, and no NFS client has business there."""
    path = safe_dir(root, name)
    if not os.path.isdir(path):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    return path


def captures_dir(root, rel):
    return safe_dir(root, CAPTURES_DIR, rel)


def points_dir(root, rel):
    return safe_dir(root, POINTS_DIR, rel)


def restore_path(dr_dir, point_stamp):
    parent, base = os.path.split(dr_dir)
    return os.path.join(parent, "%s%s-%s" % (RESTORE_PREFIX, base, point_stamp))


def remove_tree(path):
    """Remove a capture or point: first renamed to <name>.deleting, so that a
    crash half-way never leaves something that looks whole."""
    if not os.path.lexists(path):
        return
    if not path.endswith(TRASH):
        trash = path + TRASH
        if os.path.lexists(trash):
            remove_tree(trash)
        os.rename(path, trash)
        path = trash
    remove_any(path)


def remove_any(path):
    """rm -r path; a symlink or file is unlinked, never followed."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_fs(path):
    """Flush the filesystem holding path (the data a clone shares with the
    working copy, and the clone's metadata) before a point is renamed whole."""
    try:
        if subprocess.run(["sync", "-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600).returncode == 0:
            return
    except (OSError, subprocess.TimeoutExpired):
        pass
    os.sync()


# ---------------------------------------------------------------- cloning

def clone_argv(src, dst):
    return ["cp", "-a", "--reflink=always", "--", src.rstrip("/") + "/.", dst.rstrip("/") + "/"]


def is_unsupported(text):
    return any(u in text for u in UNSUPPORTED)


def run_argv(argv, timeout):
    """(returncode, stderr tail) of argv; rc None on timeout or exec failure."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %ss" % timeout
    except OSError as e:
        return None, "cannot run %s: %s" % (argv[0], e)
    return proc.returncode, (proc.stderr or proc.stdout).decode(errors="replace").strip()[-500:]


def clone(src, dst, timeout=None):
    """Reflink-clone the directory src (contents and attributes) to dst, which
    must not exist. Raises Unsupported (no reflink) or PointError, and then
    leaves no dst behind."""
    rc, err = run_argv(clone_argv(src, dst), timeout)
    if rc == 0:
        return
    remove_any(dst)
    if rc is not None and is_unsupported(err):
        raise Unsupported(err)
    raise PointError("cp --reflink=always: %s" % (err or "exit %s" % rc))


def command_argv(template, values):
    """The capture command's argv: {src} {dst} {name} {rel} replaced in each
    argument (plain replacement: other braces stay as they are)."""
    if not template or not all(isinstance(a, str) for a in template):
        raise PointError("capture_command must be a non-empty list of strings")
    out = []
    for arg in template:
        for key in ("src", "dst", "name", "rel"):
            arg = arg.replace("{%s}" % key, values[key])
        out.append(arg)
    return out


def run_command(argv, dst, timeout=None):
    rc, err = run_argv(argv, timeout)
    if rc == 0 and os.path.isdir(dst) and not os.path.islink(dst):
        return
    remove_any(dst)
    if rc == 0:
        raise PointError("capture command exited 0 but did not create the directory %s" % dst)
    raise PointError("capture command %s: %s" % (argv[0], err or "exit %s" % rc))


# ---------------------------------------------------------------- locks

LOCK_DIR = ".ocpdr-locks"


def lock_path(root, rel):
    return os.path.join(root, LOCK_DIR, rel.replace("/", "%") + ".lock")


class Lock(object):
    """flock on a per-directory lock file inside the DR export root (or, for
    captures, shared by readers, inside <primary root>/.ocpdr-captures)."""

    def __init__(self, root, rel, timeout, shared=False):
        os.makedirs(os.path.join(root, LOCK_DIR), exist_ok=True)
        self.path = lock_path(root, rel)
        self.timeout = timeout
        self.fd = None
        self.how = fcntl.LOCK_SH if shared else fcntl.LOCK_EX

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.time() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, self.how | fcntl.LOCK_NB)
                return self
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                    os.close(self.fd)
                    raise RuntimeError("directory is locked by another sync (waited %ss)" % self.timeout)
                time.sleep(0.2)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---------------------------------------------------------------- captures (primary)

def capture(src, root, rel, name, method="reflink", command=None, timeout=None):
    """Clone the live directory src into <root>/.ocpdr-captures/<rel>/<stamp>/.
    Returns the capture record (see docs/recovery-points.md)."""
    start = time.time()
    top_dir(root, CAPTURES_DIR)
    base = captures_dir(root, rel)
    os.makedirs(base, exist_ok=True)
    now = utcnow()
    final = os.path.join(base, stamp(now))
    partial = final + PARTIAL
    rec = {"name": name, "rel": rel, "path": final, "time": rfc3339(now), "method": method, "status": "ok", "reason": ""}
    try:
        if method == "command":
            run_command(command_argv(command, {"src": src, "dst": partial, "name": name, "rel": rel}), partial, timeout)
        else:
            clone(src, partial, timeout)
        os.rename(partial, final)
        fsync_dir(base)
    except Unsupported as e:
        rec.update(status="unsupported", reason="no reflink on the primary export filesystem (%s): the sync copies the live directory" % e)
    except (PointError, OSError) as e:
        rec.update(status="failed", reason=str(e))
    if rec["status"] != "ok":
        rec["path"] = None
    rec["duration"] = round(time.time() - start, 3)
    return rec


def reserved_part(part):
    """True for a path component DR uses for itself (any depth)."""
    return part.startswith(".ocpdr") or part.startswith("archived-")


def live_dir(src, root):
    """src when it is a live PV directory below root (no symlink out of it,
    none into a reserved name); ValueError with the reason otherwise."""
    if not os.path.isdir(src):
        raise ValueError("primary directory %s is missing" % src)
    real, top = os.path.realpath(src), os.path.realpath(root)
    if not real.startswith(top + "/"):
        raise ValueError("primary path resolves outside the export root (symlink): %s" % real)
    if any(reserved_part(x) for x in os.path.relpath(real, top).split("/")):
        raise ValueError("primary path resolves into a name reserved for DR (symlink): %s" % real)
    return src


def capture_entry(entry, o, deadline, check_mode=False):
    """The capture record of one mapped (or refused) PV entry (name, rel,
    primary_path, status, reason). o: root, method, command, lock_timeout,
    timeout (the capture_timeout the deadline came from)."""
    rec = {"name": entry["name"], "rel": entry.get("rel"), "path": None, "time": None, "method": o["method"],
           "status": "refused", "reason": entry.get("reason", ""), "duration": 0}
    if entry["status"] != "mapped":
        return rec
    try:
        src = live_dir(entry["primary_path"], o["root"])
    except ValueError as e:
        rec["reason"] = str(e)
        return rec
    if o["method"] == "none" or check_mode:
        why = "check mode: nothing captured" if check_mode else "capture_method none"
        rec.update(status="skipped", reason=why + ": the sync copies the live directory (inconsistent)")
        return rec
    left = None if deadline is None else deadline - time.time()
    if left is not None and left <= 0:
        rec.update(status="failed", reason="capture_timeout (%ss) used up before this PV: not captured" % o["timeout"])
        return rec
    try:
        caps = top_dir(o["root"], CAPTURES_DIR)
        with Lock(caps, entry["rel"], o["lock_timeout"] if left is None else left, shared=True):
            return capture(src, o["root"], entry["rel"], entry["name"], o["method"], o.get("command"), left)
    except (ValueError, RuntimeError, OSError) as e:
        rec.update(status="failed", reason=str(e))
        return rec


CAPTURE_WORKERS = 8


def capture_entries(entries, o, check_mode=False):
    """One capture per PV entry, within o["timeout"] seconds (0: no limit),
    up to CAPTURE_WORKERS at once: a batch's VMs stay frozen until its last
    clone, and a clone mostly waits on the filesystem's metadata journal."""
    deadline = time.time() + o["timeout"] if o.get("timeout", 0) > 0 else None
    if len(entries) < 2:
        return [capture_entry(e, o, deadline, check_mode) for e in entries]
    with ThreadPoolExecutor(max_workers=min(len(entries), CAPTURE_WORKERS)) as pool:
        return list(pool.map(lambda e: capture_entry(e, o, deadline, check_mode), entries))


def capture_program():
    """Python source that runs capture_entries on another host: this module's
    own source (so both sides capture with the same code), then a main that
    reads {"entries": [...], "options": {...}} on stdin and prints the records
    as JSON. ocpdr_freeze runs it over SSH on the primary NFS host."""
    return inspect.getsource(sys.modules[__name__]) + "\n\n" + _CAPTURE_MAIN


_CAPTURE_MAIN = """
if __name__ == "__main__":
    _req = json.load(sys.stdin)
    json.dump(capture_entries(_req["entries"], _req["options"]), sys.stdout)
"""


def stamped(names):
    """The names of whole captures or points, oldest first."""
    return sorted(n for n in names if STAMP_RE.match(n))


def unfinished(names):
    """The *.partial and *.deleting captures or points among names."""
    return sorted(n for n in names if ENTRY_RE.match(n) and not STAMP_RE.match(n))


def release(root, rel, keep, check=False):
    """Remove all captures of rel but the newest keep, and every leftover
    *.partial / *.deleting. Returns (kept, removed) name lists."""
    base = captures_dir(root, rel)
    if not os.path.isdir(base):
        return [], []
    names = os.listdir(base)
    whole = stamped(names)
    kept = whole[len(whole) - keep:] if keep > 0 else []
    removed = [n for n in whole if n not in kept]
    removed += unfinished(names)
    if not check:
        for n in removed:
            remove_tree(os.path.join(base, n))
    return kept, removed


# ---------------------------------------------------------------- trees

def tree_stats(path):
    """(files, bytes) as the sync's verification counts them: every
    non-directory entry below path, by lstat."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            files += 1
            size += st.st_size
    return files, size


def reserved(name, is_dir):
    return name.startswith(".ocpdr") or (is_dir and bool(ARCHIVE_DIR_RE.match(name)))


def tree_fingerprint(path):
    """sha256 over what rsync -a makes equal at the receiver: relative path,
    type and permission bits of every entry, size and mtime (nanoseconds,
    as rsync --modify-window=-1 compares them) of every non-directory; reserved names skipped as rsync skips them. A DR copy
    with the fingerprint of its capture is that capture's sync result."""
    rows = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not reserved(d, True)]
        for n in dirs:
            st = os.lstat(os.path.join(root, n))
            rows.append("d\0%s\0%o" % (os.path.relpath(os.path.join(root, n), path), st.st_mode))
        for n in names:
            if reserved(n, False):
                continue
            st = os.lstat(os.path.join(root, n))
            rows.append("f\0%s\0%o\0%d\0%d" % (os.path.relpath(os.path.join(root, n), path), st.st_mode, st.st_size, st.st_mtime_ns))
    h = hashlib.sha256()
    for r in sorted(rows):
        h.update(r.encode("utf-8", "surrogateescape") + b"\n")
    return "sha256:" + h.hexdigest()


def checksums(path):
    """sha256 of every regular file below path, by relative path."""
    out = {}
    for root, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[os.path.relpath(full, path)] = "sha256:" + h.hexdigest()
    return out


# ---------------------------------------------------------------- points (DR)

def make_point(dr_root, rel, dr_dir, fields, with_checksums=False):
    """Keep the DR directory as the point <dr_root>/.ocpdr-points/<rel>/<stamp>/
    (stamp from fields["time"]): data/ a reflink clone, manifest.json beside it,
    written as <stamp>.partial and renamed whole. The caller holds the
    directory's lock. Returns the manifest; raises Unsupported or PointError.
    An existing point of the same time (the same capture synced again) is
    returned as it is."""
    base = points_dir(dr_root, rel)
    name = stamp(parse_time(fields["time"]))
    final = os.path.join(base, name)
    if os.path.isdir(final):
        m, why = read_manifest(final, rel)
        if m is not None:
            return m
        raise PointError("a damaged point %s exists already (%s)" % (final, why))
    partial = final + PARTIAL
    top_dir(dr_root, POINTS_DIR)
    os.makedirs(base, exist_ok=True)
    if os.path.lexists(partial):
        remove_any(partial)
    os.mkdir(partial, 0o700)
    try:
        clone(dr_dir, os.path.join(partial, "data"))
        manifest = build_manifest(fields, rel, os.path.join(partial, "data"), with_checksums)
        write_json(os.path.join(partial, MANIFEST), manifest)
        sync_fs(partial)
        os.rename(partial, final)
        fsync_dir(base)
    except BaseException:
        if os.path.lexists(partial):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    manifest["path"] = final
    return manifest


def build_manifest(fields, rel, data, with_checksums):
    files, size = tree_stats(data)
    m = {"version": 1, "pv": fields.get("pv"), "rel": rel, "time": fields["time"],
         "consistency": fields.get("consistency", "inconsistent"), "capture_method": fields.get("capture_method"),
         "source": fields.get("source", "live"), "job": fields.get("job") or None,
         "vms": list(fields.get("vms") or []), "frozen": list(fields.get("frozen") or []),
         "files": files, "bytes": size, "created": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")}
    if fields.get("consistency_reason"):
        m["consistency_reason"] = fields["consistency_reason"]
    if with_checksums:
        m["checksums"] = checksums(data)
    return m


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(point, rel=None):
    """(manifest with path, None) of a point directory, or (None, reason)
    when it is damaged: never raises."""
    try:
        with open(os.path.join(point, MANIFEST)) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        return None, "manifest unreadable: %s" % e
    why = manifest_problem(m, os.path.basename(point), rel)
    if why:
        return None, why
    if not os.path.isdir(os.path.join(point, "data")) or os.path.islink(os.path.join(point, "data")):
        return None, "data directory missing"
    m["path"] = point
    return m, None


def manifest_problem(m, name, rel):
    if not isinstance(m, dict) or m.get("version") != 1:
        return "manifest is not a version 1 manifest"
    try:
        t = parse_time(m.get("time"))
    except ValueError as e:
        return "manifest time: %s" % e
    if stamp(t) != name:
        return "manifest time %s does not match the point's name %s" % (m.get("time"), name)
    if m.get("consistency") not in LEVELS:
        return "manifest consistency %r is not one of %s" % (m.get("consistency"), ", ".join(LEVELS))
    if rel is not None and m.get("rel") != rel:
        return "manifest is for %r, not %r" % (m.get("rel"), rel)
    return None


def list_points(dr_root, rel):
    """The catalogue of one PV: points (manifests, oldest first), damaged
    ({path, reason}) and incomplete (*.partial, *.deleting names). Raises
    OSError or ValueError when the directory cannot be listed."""
    base = points_dir(dr_root, rel)
    out = {"rel": rel, "points": [], "damaged": [], "incomplete": []}
    if not os.path.isdir(base):
        return out
    names = os.listdir(base)
    for n in stamped(names):
        m, why = read_manifest(os.path.join(base, n), rel)
        if m is None:
            out["damaged"].append({"path": os.path.join(base, n), "time": rfc3339(stamp_time(n)), "reason": why})
        else:
            out["points"].append(m)
    out["incomplete"] = unfinished(names)
    return out


def catalogue_rels(dr_root):
    """Every rel with a point directory under <dr_root>/.ocpdr-points: a
    directory holding a stamped, partial or deleting entry."""
    top = safe_dir(dr_root, POINTS_DIR)
    rels = []
    for root, dirs, names in os.walk(top):
        if root != top and any(ENTRY_RE.match(n) for n in dirs + names):
            rels.append(os.path.relpath(root, top))
        dirs[:] = [d for d in dirs if not ENTRY_RE.match(d)]
    return sorted(rels)


# ---------------------------------------------------------------- retention and selection

def point_time(pt):
    t = pt["time"]
    return t if isinstance(t, datetime.datetime) else parse_time(t)


def retention(points, now, keep_all_hours, daily_days):
    """(keep, remove) of one PV's points: every point newer than
    keep_all_hours; the newest point of each of the last daily_days UTC days
    (today included); always the newest point. Order kept as given."""
    if not points:
        return [], []
    newest = max(points, key=point_time)
    keep_ids = {id(newest)}
    cutoff = now - datetime.timedelta(hours=keep_all_hours)
    day_newest = {}
    for pt in points:
        t = point_time(pt)
        if t > cutoff:
            keep_ids.add(id(pt))
        if (now.astimezone(UTC).date() - t.date()).days < daily_days:
            d = t.date()
            if d not in day_newest or t > point_time(day_newest[d]):
                day_newest[d] = pt
    keep_ids.update(id(pt) for pt in day_newest.values())
    keep = [pt for pt in points if id(pt) in keep_ids]
    remove = [pt for pt in points if id(pt) not in keep_ids]
    return keep, remove


def check_spec(spec):
    """ValueError unless spec is latest, latest-application-consistent or an RFC 3339 time."""
    if spec not in (SELECT_LATEST, SELECT_APP):
        parse_time(spec)


def select_point(points, spec):
    """The point a failover restores: latest (newest), latest-application-consistent
    (newest application-consistent), or an RFC 3339 time (newest at or before it).
    None when no point qualifies; ValueError for another spec. Pass whole points
    only (list_points' points): damaged ones are never chosen."""
    check_spec(spec)
    if spec == SELECT_LATEST:
        ok = list(points)
    elif spec == SELECT_APP:
        ok = [pt for pt in points if pt.get("consistency") == "application-consistent"]
    else:
        limit = parse_time(spec)
        ok = [pt for pt in points if point_time(pt) <= limit]
    return max(ok, key=point_time) if ok else None


def prune(dr_root, rel, now, keep_all_hours, daily_days, check=False):
    """Apply retention to one PV (the caller holds its lock): returns
    {rel, kept, removed, damaged, incomplete_removed}; raises (deleting
    nothing) when the catalogue cannot be listed."""
    cat = list_points(dr_root, rel)
    keep, remove = retention(cat["points"], now, keep_all_hours, daily_days)
    base = points_dir(dr_root, rel)
    if not check:
        for pt in remove:
            remove_tree(pt["path"])
        for n in cat["incomplete"]:
            remove_tree(os.path.join(base, n))
    return {"rel": rel, "kept": len(keep), "removed": len(remove), "removed_times": [pt["time"] for pt in remove],
            "damaged": cat["damaged"], "incomplete_removed": cat["incomplete"]}


# ---------------------------------------------------------------- restore (failover)

def restore(point, dr_dir, archive_to):
    """Replace dr_dir by a reflink clone of point's data (the caller holds
    the lock): cloned to .ocpdr-restore-<name>-<stamp> beside it, then dr_dir
    renamed to archive_to (when it exists) and the clone renamed into place.
    Returns the archive path or None."""
    work = restore_path(dr_dir, os.path.basename(point["path"]))
    if os.path.lexists(work):
        remove_any(work)
    os.makedirs(os.path.dirname(dr_dir), exist_ok=True)
    clone(os.path.join(point["path"], "data"), work)
    archived = None
    if os.path.lexists(dr_dir):
        os.rename(dr_dir, archive_to)
        archived = archive_to
    os.rename(work, dr_dir)
    fsync_dir(os.path.dirname(dr_dir))
    return archived
