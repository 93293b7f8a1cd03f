# -*- coding: utf-8 -*-
# ocpv-dr: the freeze plan of a sync (docs/recovery-points.md, step 1).
# Pure functions over Kubernetes objects as dicts: no API client, no I/O.
# The ocpdr_freeze module imports it as ansible.module_utils.ocpdr_freezeplan
# (role module_utils), pytest by path (test/python/test_freezeplan.py).
"""Which VMs use which PVs, their sibling disks, consistency per PV, batching."""

from __future__ import absolute_import, division, print_function

import os
import re

__metaclass__ = type

APP = "application-consistent"
CRASH = "crash-consistent"
CSI_DRIVER = "nfs.csi.k8s.io"
RUNNING = "Running"
STOPPED = "Stopped"
# A Kubernetes object name (DNS-1123 subdomain): what may go into an API path.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Redacted in every message the module returns (besides the kubeconfig's own secrets).
BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


# ---------------------------------------------------------------- objects

def meta(obj):
    return (obj or {}).get("metadata") or {}


def spec(obj):
    return (obj or {}).get("spec") or {}


def obj_name(obj):
    """The name ocpdr_sync gives an object: a PV's name, an NFSDirectory's path."""
    if (obj or {}).get("kind") == "NFSDirectory":
        return str(obj.get("path", "?"))
    return meta(obj).get("name", "?")


def vm_key(namespace, name):
    return "%s/%s" % (namespace, name)


def valid_name(s):
    return isinstance(s, str) and bool(NAME_RE.match(s))


def nfs_source(pv):
    """(server, normalized path) of an NFS PV (spec.nfs or csi-driver-nfs), or
    of an NFSDirectory object; None for anything else. Same rule as ocpdr_sync."""
    if (pv or {}).get("kind") == "NFSDirectory":
        if pv.get("server") and pv.get("path"):
            return str(pv["server"]), os.path.normpath(str(pv["path"]))
        return None
    s = spec(pv)
    nfs = s.get("nfs")
    if nfs:
        if nfs.get("server") and nfs.get("path"):
            return str(nfs["server"]), os.path.normpath(str(nfs["path"]))
        return None
    csi = s.get("csi")
    if not csi or csi.get("driver") != CSI_DRIVER:
        return None
    attrs = csi.get("volumeAttributes") or {}
    if attrs.get("server") and attrs.get("share"):
        path = str(attrs["share"]).rstrip("/")
        if attrs.get("subdir"):
            path += "/" + str(attrs["subdir"])
        return str(attrs["server"]), os.path.normpath(path or "/")
    parts = str(csi.get("volumeHandle", "")).split("#")
    subdir = parts[2].strip("/") if len(parts) >= 3 else ""
    if len(parts) >= 2 and parts[0] and (parts[1].strip("/") or subdir):
        return parts[0], os.path.normpath("/" + "/".join(x for x in (parts[1].strip("/"), subdir) if x))
    return None


def claim_of(pv):
    """(namespace, claim name) the PV is bound to, or None."""
    ref = spec(pv).get("claimRef") or {}
    if ref.get("namespace") and ref.get("name"):
        return str(ref["namespace"]), str(ref["name"])
    return None


def vm_claims(vm):
    """The PVC names a VM's disks use (persistentVolumeClaim.claimName or
    dataVolume.name, whose PVC has the DataVolume's name), in order, once each."""
    out = []
    for v in (spec(spec(vm).get("template")).get("volumes") or []):
        v = v or {}
        name = (v.get("persistentVolumeClaim") or {}).get("claimName") or (v.get("dataVolume") or {}).get("name")
        if name and name not in out:
            out.append(str(name))
    return out


def vm_status(vm):
    return str(((vm or {}).get("status") or {}).get("printableStatus") or "Unknown")


def eligible(pv, storage_classes):
    """Whether a sibling PV is added to the sync: NFS, and of one of
    storage_classes when given (a PV without a class counts as NFS)."""
    if nfs_source(pv) is None:
        return False, "not an NFS PV: not replicated by ocpv-dr"
    cls = spec(pv).get("storageClassName")
    if storage_classes and cls and cls not in storage_classes:
        return False, "storage class %s is not replicated (ocpdr_nfs_storage_classes)" % cls
    return True, ""


# ---------------------------------------------------------------- resolve and expand

def resolve(objs, cluster_pvs):
    """Turn the input (PV objects or NFSDirectory objects) into PV objects.
    A PV is taken as the cluster has it now (by name) when it is there; an
    NFSDirectory becomes every PV whose NFS server and path it names, or stays
    as it is when none does. Returns (objects, notes), each object once."""
    by_name = dict((meta(p).get("name"), p) for p in cluster_pvs if meta(p).get("name"))
    by_source = {}
    for p in cluster_pvs:
        src = nfs_source(p)
        if src:
            by_source.setdefault(src, []).append(p)
    out, seen, notes = [], set(), []

    def add(o):
        key = obj_name(o)
        if key not in seen:
            seen.add(key)
            out.append(o)

    for o in objs:
        o = o or {}
        if o.get("kind") == "NFSDirectory":
            matches = by_source.get(nfs_source(o)) or []
            if not matches:
                notes.append("NFS directory %s:%s is not a PV's: synced without a freeze (no VM known to use it)"
                             % (o.get("server"), o.get("path")))
                add(o)
            for p in matches:
                add(p)
            continue
        add(by_name.get(meta(o).get("name"), o))
    return out, notes


def namespaces_of(pvs):
    """The namespaces of the PVs' claims (where the VMs using them live), sorted."""
    return sorted(set(c[0] for c in (claim_of(p) for p in pvs) if c))


def expand(pvs, cluster_pvs, pvcs, vms, storage_classes=None):
    """The freeze plan: the VMs using the PVs, and every other disk of those
    VMs (transitively: a sibling shared with another VM brings that VM's
    disks too), so that a VM's disks share one point in time.

    pvs: resolved PV objects; cluster_pvs: every PV; pvcs and vms: the PVCs
    and VirtualMachines of the claims' namespaces. Returns a dict with
    pvs (objects: the input first, then the added siblings), added (names),
    vms ({namespace, name, status, running, pvcs, pvs, skipped_disks}),
    pv_vms ({pv name: [vm keys]})."""
    storage_classes = list(storage_classes or [])
    pv_by_name = dict((meta(p).get("name"), p) for p in cluster_pvs if meta(p).get("name"))
    pvc_by_key = dict(((meta(c).get("namespace"), meta(c).get("name")), c) for c in pvcs)
    users = {}
    vm_by_key = {}
    for vm in vms:
        ns, name = meta(vm).get("namespace"), meta(vm).get("name")
        if not ns or not name:
            continue
        k = vm_key(ns, name)
        vm_by_key[k] = vm
        for claim in vm_claims(vm):
            users.setdefault((ns, claim), []).append(k)

    selected, order, added = {}, [], []
    for p in pvs:
        n = obj_name(p)
        if n not in selected:
            selected[n] = p
            order.append(n)
    queue = list(order)
    plan_vms, pv_vms = {}, {}
    while queue:
        n = queue.pop(0)
        claim = claim_of(selected[n])
        for k in (users.get(claim, []) if claim else []):
            pv_vms.setdefault(n, [])
            if k not in pv_vms[n]:
                pv_vms[n].append(k)
            if k in plan_vms:
                continue
            vm = vm_by_key[k]
            ns = meta(vm)["namespace"]
            status = vm_status(vm)
            rec = {"namespace": ns, "name": meta(vm)["name"], "status": status, "running": status == RUNNING,
                   "pvcs": vm_claims(vm), "pvs": [], "skipped_disks": []}
            plan_vms[k] = rec
            for c in rec["pvcs"]:
                pvc = pvc_by_key.get((ns, c))
                vol = spec(pvc).get("volumeName") if pvc else None
                if not vol:
                    rec["skipped_disks"].append({"pvc": c, "reason": "PVC not found" if pvc is None else "PVC not bound"})
                    continue
                pv = pv_by_name.get(vol) or selected.get(vol)
                if pv is None:
                    rec["skipped_disks"].append({"pvc": c, "pv": vol, "reason": "PV not found"})
                    continue
                if vol not in selected:
                    ok, why = eligible(pv, storage_classes)
                    if not ok:
                        rec["skipped_disks"].append({"pvc": c, "pv": vol, "reason": why})
                        continue
                    selected[vol] = pv
                    order.append(vol)
                    added.append(vol)
                    queue.append(vol)
                rec["pvs"].append(vol)
    vm_list = [plan_vms[k] for k in sorted(plan_vms)]
    return {"pvs": [selected[n] for n in order], "added": added, "vms": vm_list,
            "pv_vms": dict((n, sorted(v)) for n, v in pv_vms.items())}


# ---------------------------------------------------------------- consistency

def consistency(pv_names, pv_vms, vms):
    """{pv name: {name, consistency, vms, frozen, consistency_reason}}. application-consistent
    when at least one VM uses the PV and every VM using it is Stopped or was
    frozen; otherwise crash-consistent (a VM not frozen, or no VM at all)."""
    by_key = dict((vm_key(v["namespace"], v["name"]), v) for v in vms)
    out = {}
    for n in pv_names:
        keys = list(pv_vms.get(n) or [])
        frozen = [k for k in keys if by_key.get(k, {}).get("frozen")]
        stopped = [k for k in keys if by_key.get(k, {}).get("status") == STOPPED]
        not_quiet = [k for k in keys if k not in frozen and k not in stopped]
        if not keys:
            level, why = CRASH, "no VM uses this PV"
        elif not_quiet:
            level = CRASH
            why = "; ".join("%s %s" % (k, vm_reason(by_key.get(k, {}))) for k in not_quiet)
        else:
            level, why = APP, ""
        out[n] = {"name": n, "consistency": level, "vms": keys, "frozen": frozen, "consistency_reason": why}
    return out


def vm_reason(vm):
    """Why a VM using a PV was neither stopped nor frozen."""
    if vm.get("freeze_error"):
        return "not frozen: %s" % vm["freeze_error"]
    if vm.get("running"):
        return "not frozen"
    return "is %s (neither Running nor Stopped): not frozen" % vm.get("status", "Unknown")


def planned(vms):
    """The VMs as a freeze would leave them if every freeze succeeded (check mode)."""
    return [dict(v, frozen=bool(v.get("running")), planned=True) for v in vms]


# ---------------------------------------------------------------- batching

def components(pv_names, pv_vms):
    """Groups of PVs linked by the VMs that use them (a VM's disks, and the
    disks of VMs sharing one, stay together), in input order: [(pvs, vm keys)]."""
    parent = dict((n, n) for n in pv_names)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_pv = {}
    for n in pv_names:
        for k in pv_vms.get(n) or []:
            if k in first_pv:
                a, b = find(first_pv[k]), find(n)
                if a != b:
                    parent[b] = a
            else:
                first_pv[k] = n
    groups, order = {}, []
    for n in pv_names:
        r = find(n)
        if r not in groups:
            groups[r] = ([], [])
            order.append(r)
        groups[r][0].append(n)
        for k in pv_vms.get(n) or []:
            if k not in groups[r][1]:
                groups[r][1].append(k)
    return [(groups[r][0], sorted(groups[r][1])) for r in order]


def batches(pv_names, pv_vms, vms, max_vms):
    """Split the plan into freeze batches of at most max_vms running VMs
    (0: one batch). A group of PVs linked by VMs never splits; one with more
    running VMs than max_vms is a batch of its own, marked oversize (it is
    not frozen). PVs no running VM uses go into one last batch with running 0.
    Returns [{pvs, vms, running, oversize}]."""
    running = set(vm_key(v["namespace"], v["name"]) for v in vms if v.get("running"))
    if not pv_names:
        return []
    comps = components(pv_names, pv_vms)
    if max_vms <= 0:
        keys = sorted(set(k for _, ks in comps for k in ks))
        return [{"pvs": list(pv_names), "vms": keys, "running": len([k for k in keys if k in running]), "oversize": False}]
    quiet, busy = [], []
    for pvs, keys in comps:
        n = len([k for k in keys if k in running])
        (busy if n else quiet).append((pvs, keys, n))
    out = []
    # First fit, largest groups first; the PVs of a batch keep the input order.
    index = dict((n, i) for i, n in enumerate(pv_names))
    for pvs, keys, n in sorted(busy, key=lambda c: (-c[2], index[c[0][0]])):
        if n > max_vms:
            out.append({"pvs": list(pvs), "vms": list(keys), "running": n, "oversize": True})
            continue
        for b in out:
            if not b["oversize"] and b["running"] + n <= max_vms:
                b["pvs"].extend(pvs)
                b["vms"].extend(keys)
                b["running"] += n
                break
        else:
            out.append({"pvs": list(pvs), "vms": list(keys), "running": n, "oversize": False})
    if quiet:
        out.append({"pvs": [p for c in quiet for p in c[0]], "vms": sorted(set(k for c in quiet for k in c[1])),
                    "running": 0, "oversize": False})
    for b in out:
        b["pvs"].sort(key=lambda n: index[n])
        b["vms"] = sorted(set(b["vms"]))
    return out


def oversize_error(batch, max_vms):
    return ("shares disks with other running VMs: %d running VMs must freeze together, more than the limit of %d "
            "(ocpdr_freeze_max_vms): not frozen" % (batch["running"], max_vms))


# ---------------------------------------------------------------- API requests

def subresource_path(namespace, name, action):
    """The KubeVirt subresource path of a VMI action (freeze, unfreeze); Refuses
    names that are not Kubernetes names (they go into the URL)."""
    if action not in ("freeze", "unfreeze"):
        raise ValueError("unknown action %r" % action)
    if not valid_name(namespace) or not valid_name(name):
        raise ValueError("%r/%r is not a valid namespace/name" % (namespace, name))
    return "/apis/subresources.kubevirt.io/v1/namespaces/%s/virtualmachineinstances/%s/%s" % (namespace, name, action)


def freeze_body(unfreeze_timeout):
    """The freeze request body: the guest agent thaws by itself after this."""
    return {"unfreezeTimeout": "%ds" % int(unfreeze_timeout)}


def thaw_targets(vms):
    """The VMs a thaw must try: frozen, or whose freeze ended without a clear
    answer (the guest may be frozen)."""
    return [v for v in vms if v.get("frozen") or v.get("thaw_needed")]


def check_vms(vms):
    """Validate the vms given to a thaw (they come from a previous run's result)."""
    for v in vms:
        if not isinstance(v, dict) or not valid_name(v.get("namespace")) or not valid_name(v.get("name")):
            raise ValueError("vms: each entry needs a namespace and name that are Kubernetes names, got %r" % (v,))


def redact(text, secrets):
    """text without any of secrets (tokens, passwords) nor Bearer credentials."""
    text = "" if text is None else str(text)
    for s in sorted((x for x in secrets if x and len(x) >= 4), key=len, reverse=True):
        text = text.replace(s, "<redacted>")
    return BEARER_RE.sub(r"\1<redacted>", text)
