#!/usr/bin/python3
# -*- coding: utf-8 -*-
# ocpv-dr: freeze and thaw the primary cluster's VMs around a capture
# (docs/recovery-points.md, steps 1 and 3). Runs where ansible-playbook runs,
# with the primary kubeconfig; python3-kubernetes (as kubernetes.core uses).
# The plan itself is pure functions in module_utils/ocpdr_freezeplan.py.
"""ocpdr_freeze: freeze (fsfreeze through the KubeVirt guest agent) the VMs using a set of PVs, or thaw them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ocpdr_freeze
short_description: Freeze or thaw the KubeVirt VMs whose disks are a set of PVs
description:
  - C(state=frozen) - for each PV (or NFSDirectory event object, matched to PVs by NFS server and path) finds
    the PVC it is bound to (C(spec.claimRef)) and the C(kubevirt.io/v1) VirtualMachines in that namespace whose
    C(spec.template.spec.volumes) name it (C(persistentVolumeClaim.claimName) or C(dataVolume.name)). Every other
    disk of those VMs (PVC C(spec.volumeName)) is added to the returned C(pvs), transitively, so a VM's disks
    share one point in time.
  - A VM whose C(status.printableStatus) is Running is frozen through
    C(PUT /apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/freeze) with
    C(unfreezeTimeout) (the guest agent thaws by itself after it). A Stopped VM needs no freeze. A VM that
    cannot be frozen (no guest agent - the API answers an error) gets C(freeze_error); the PVs it uses are
    crash-consistent.
  - C(state=thawed) - unfreezes the C(vms) a freeze returned. Every VM is tried even when one fails; the module
    fails afterwards, naming the VMs it could not thaw.
  - In check mode nothing is frozen or thawed - the plan is returned as if every freeze succeeded, with
    C(batches) of at most C(max_frozen) running VMs.
  - Tokens and passwords of the kubeconfig never appear in results or messages.
options:
  kubeconfig:
    description: Path of the primary cluster's kubeconfig.
    type: path
    required: true
  context:
    description: Kubeconfig context (default its current-context).
    type: str
  state:
    description: frozen (plan and freeze) or thawed (unfreeze C(vms)).
    type: str
    required: true
    choices: [frozen, thawed]
  pvs:
    description:
      - State frozen - PersistentVolume objects, or NFSDirectory objects C({kind, server, path}) from
        forwarder watch-exports.
    type: list
    elements: dict
    default: []
  vms:
    description: State thawed - the C(vms) returned by state frozen (entries with frozen or thaw_needed are unfrozen).
    type: list
    elements: dict
    default: []
  storage_classes:
    description:
      - Sibling disks are added only when their PV is NFS and of one of these storage classes (a PV without a
        class counts as NFS); empty adds every NFS sibling.
    type: list
    elements: str
    default: []
  unfreeze_timeout:
    description: Seconds after which the guest agent thaws a frozen guest by itself (the freeze budget plus a margin).
    type: int
    default: 60
  max_frozen:
    description:
      - State frozen - the most running VMs one call freezes; more fails before anything is frozen (freeze in
        batches - C(batches) in check mode). 0 is no limit.
    type: int
    default: 10
  request_timeout:
    description: Seconds for each API request.
    type: int
    default: 30
  capture:
    description:
      - State frozen - capture the PV directories on the primary NFS host between the freeze and the thaw, in this
        one call, then thaw (always, also when the capture fails). Keys - C(host), C(port), C(user), C(key),
        C(common_args), C(extra_args) (the primary NFS host as Ansible reaches it), C(become) (sudo -n), C(python),
        C(entries) (ocpdr_sync mode=map results) and C(options) (C(root), C(method), C(command), C(lock_timeout),
        C(timeout)). The capture runs module_utils/ocpdr_points.py's capture_entries over SSH.
    type: dict
requirements: [python3-kubernetes (kubernetes Python client)]
author: ocpv-dr
"""

EXAMPLES = r"""
- name: Plan (check mode) the freeze of the VMs using a PV
  ocpdr_freeze:
    kubeconfig: /etc/ocpdr/kubeconfig-primary
    state: frozen
    pvs: ["{{ pv_object }}"]
  check_mode: true
  register: plan

- name: Freeze them
  ocpdr_freeze:
    kubeconfig: /etc/ocpdr/kubeconfig-primary
    state: frozen
    pvs: ["{{ pv_object }}"]
    unfreeze_timeout: 60
  register: frozen

- name: Thaw them
  ocpdr_freeze:
    kubeconfig: /etc/ocpdr/kubeconfig-primary
    state: thawed
    vms: "{{ frozen.vms }}"
"""

RETURN = r"""
pvs:
  description: State frozen - the PV objects to capture and sync (the input, NFSDirectory objects resolved to their PVs, then the added sibling disks).
  returned: state frozen
  type: list
added:
  description: Names of the sibling PVs added.
  returned: state frozen
  type: list
vms:
  description:
    - The VMs using those PVs - namespace, name, status (printableStatus), running, pvcs, pvs, skipped_disks,
      frozen, freeze_error, thaw_needed (frozen or possibly frozen), planned (check mode).
  returned: state frozen
  type: list
consistency:
  description: PV name -> application-consistent or crash-consistent.
  returned: state frozen
  type: dict
volumes:
  description: PV name -> name, consistency, vms (VM keys ns/name using it), frozen (those frozen), consistency_reason.
  returned: state frozen
  type: dict
batches:
  description:
    - The plan split into batches of at most max_frozen running VMs - pvs (objects), vms (keys), running,
      oversize (more running VMs share disks than max_frozen - not frozen), unfrozen (volumes as they would be
      with no VM frozen, for oversize batches).
  returned: state frozen
  type: list
frozen_at:
  description: Epoch seconds just before the first freeze request.
  returned: state frozen
  type: float
captures:
  description: State frozen with capture - the capture records (as ocpdr_sync mode=capture returns them).
  returned: with capture
  type: list
capture_failed:
  description: True when the capture could not run or answer (then captures is empty); capture_msg says why.
  returned: with capture
  type: bool
frozen_count:
  description: VMs frozen.
  returned: state frozen
  type: int
kubevirt:
  description: False when the cluster has no kubevirt.io VirtualMachine API (no VM, nothing frozen).
  returned: state frozen
  type: bool
notes:
  description: What the plan could not resolve (NFS directories without a PV...).
  returned: state frozen
  type: list
thawed:
  description: State thawed - namespace, name, thawed (bool), error, note.
  returned: state thawed
  type: list
thawed_at:
  description: Epoch seconds when the last unfreeze answered.
  returned: state thawed
  type: float
"""

import base64
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from ansible.module_utils import ocpdr_freezeplan as fp
    from ansible.module_utils import ocpdr_points as rp
except ImportError:  # imported by path (pytest): the role's module_utils beside library/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
    import ocpdr_freezeplan as fp
    import ocpdr_points as rp

try:
    from kubernetes import config as kube_config
    from kubernetes.client.rest import ApiException
    HAS_KUBERNETES = True
    KUBERNETES_ERROR = None
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_ERROR = traceback.format_exc()

    class ApiException(Exception):
        status = 0


class ApiError(Exception):
    def __init__(self, msg, status=0, answered=False):
        Exception.__init__(self, msg)
        self.status = status
        self.answered = answered


class Api(object):
    """Raw JSON requests with the kubeconfig's credentials (kubernetes ApiClient)."""

    def __init__(self, kubeconfig, context, timeout):
        self.timeout = timeout
        self.client = kube_config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
        cfg = self.client.configuration
        secrets = []
        for v in (cfg.api_key or {}).values():
            secrets.append(str(v))
            secrets.append(str(v).split(" ", 1)[-1])
        secrets.append(cfg.password or "")
        self.secrets = secrets

    def redact(self, text):
        return fp.redact(text, self.secrets)

    def request(self, method, path, body=None, query=None):
        try:
            resp = self.client.call_api(path, method, query_params=query or [], body=body,
                                        header_params={"Accept": "application/json", "Content-Type": "application/json"},
                                        auth_settings=["BearerToken"], _preload_content=False,
                                        _return_http_data_only=True, _request_timeout=self.timeout)
        except ApiException as e:
            status = getattr(e, "status", 0) or 0
            raise ApiError(self.redact("%s %s: %s" % (method, path, answer_text(e))), status, answered=status >= 400)
        except Exception as e:  # noqa: BLE001 - connection errors, timeouts: no answer
            raise ApiError(self.redact("%s %s: %s: %s" % (method, path, type(e).__name__, e)))
        data = resp.data
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError:
            return {}

    def list(self, path, missing_ok=False):
        """Every item of a list (paged); [] and False for a 404 when missing_ok."""
        items, cont = [], None
        while True:
            query = [("limit", 500)] + ([("continue", cont)] if cont else [])
            try:
                page = self.request("GET", path, query=query)
            except ApiError as e:
                if missing_ok and e.status == 404:
                    return [], False
                raise
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items, True


def answer_text(e):
    """HTTP status, reason and the API's message (a Status body), never headers."""
    status, reason, msg = getattr(e, "status", 0), getattr(e, "reason", "") or "", ""
    body = getattr(e, "body", None)
    if body:
        try:
            doc = json.loads(body)
            msg = doc.get("message") or ""
        except (ValueError, AttributeError):
            msg = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    msg = " ".join(msg.split())[:500]
    if not status:
        return "no answer (%s)" % " ".join(str(reason).split())[:300]
    return "HTTP %s %s%s" % (status, reason, (": " + msg) if msg else "")


def plan(api, pvs, storage_classes):
    """The freeze plan of pvs (lists PVs, then PVCs and VMs of their namespaces)."""
    cluster_pvs, _ = api.list("/api/v1/persistentvolumes")
    resolved, notes = fp.resolve(pvs, cluster_pvs)
    pvcs, vms, kubevirt = [], [], True
    for ns in fp.namespaces_of(resolved):
        if not fp.valid_name(ns):
            notes.append("claim namespace %r is not a Kubernetes name: its VMs are not looked up" % ns)
            continue
        items, found = api.list("/apis/kubevirt.io/v1/namespaces/%s/virtualmachines" % ns, missing_ok=True)
        if not found:
            kubevirt = False
            notes.append("the cluster has no kubevirt.io/v1 VirtualMachine API: no VM is frozen")
            break
        vms.extend(items)
        if items:
            pvcs.extend(api.list("/api/v1/namespaces/%s/persistentvolumeclaims" % ns)[0])
    p = fp.expand(resolved, cluster_pvs, pvcs, vms, storage_classes)
    p["notes"], p["kubevirt"] = notes, kubevirt
    return p


def freeze_one(api, vm, unfreeze_timeout):
    vm = dict(vm, frozen=False, freeze_error="", thaw_needed=False)
    try:
        api.request("PUT", fp.subresource_path(vm["namespace"], vm["name"], "freeze"), body=fp.freeze_body(unfreeze_timeout))
        vm.update(frozen=True, thaw_needed=True)
    except ApiError as e:
        # An answer (no guest agent, not running...) means not frozen; no
        # answer (timeout, connection) may still have frozen the guest.
        vm["freeze_error"] = str(e)
        vm["thaw_needed"] = not e.answered or e.status == 504
    except ValueError as e:
        vm["freeze_error"] = str(e)
    return vm


def vmi_frozen(api, vm):
    """True/False from the VMI's status.fsFreezeStatus; None when unknown."""
    try:
        vmi = api.request("GET", "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances/%s" % (vm["namespace"], vm["name"]))
    except ApiError as e:
        return False if e.status == 404 else None
    return ((vmi.get("status") or {}).get("fsFreezeStatus") or "") == "frozen"


def thaw_one(api, vm):
    rec = {"namespace": vm["namespace"], "name": vm["name"], "thawed": False, "error": "", "note": ""}
    try:
        api.request("PUT", fp.subresource_path(vm["namespace"], vm["name"], "unfreeze"))
        rec["thawed"] = True
        return rec
    except ApiError as e:
        err = str(e)
    except ValueError as e:
        rec["error"] = str(e)
        return rec
    # The unfreeze failed: the VM may not be frozen at all (its freeze had no
    # clear answer, or the VM stopped since). Ask its VMI.
    state = vmi_frozen(api, vm)
    if state is False:
        rec.update(thawed=True, note="unfreeze failed (%s) but the guest is not frozen" % err)
    else:
        rec["error"] = err + ("" if state else " (freeze state unknown)")
    return rec


def pool_map(fn, items):
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(len(items), 10)) as pool:
        return list(pool.map(fn, items))


def batch_records(p, max_frozen):
    """The plan's batches with PV objects, and for oversize batches how their
    volumes stand unfrozen."""
    by_name = dict((fp.obj_name(o), o) for o in p["pvs"])
    out = []
    for b in fp.batches([fp.obj_name(o) for o in p["pvs"]], p["pv_vms"], p["vms"], max_frozen):
        rec = dict(b, pvs=[by_name[n] for n in b["pvs"]])
        if b["oversize"]:
            why = fp.oversize_error(b, max_frozen)
            vms = [dict(v, frozen=False, freeze_error=why if v["running"] else "") for v in p["vms"]
                   if fp.vm_key(v["namespace"], v["name"]) in b["vms"]]
            rec["unfrozen"] = {"vms": vms, "volumes": fp.consistency(b["pvs"], p["pv_vms"], vms)}
        out.append(rec)
    return out


def run_frozen(module, api):
    prm = module.params
    p = plan(api, prm["pvs"], prm["storage_classes"])
    running = [v for v in p["vms"] if v["running"]]
    result = dict(pvs=p["pvs"], added=p["added"], notes=p["notes"], kubevirt=p["kubevirt"],
                  batches=batch_records(p, prm["max_frozen"]))
    if module.check_mode:
        vms = fp.planned(p["vms"])
        vols = fp.consistency([fp.obj_name(o) for o in p["pvs"]], p["pv_vms"], vms)
        result.update(vms=vms, volumes=vols, consistency=dict((n, v["consistency"]) for n, v in vols.items()),
                      frozen_at=time.time(), frozen_count=0)
        module.exit_json(changed=bool(running), **result)
    if prm["max_frozen"] > 0 and len(running) > prm["max_frozen"]:
        module.fail_json(msg="%d running VMs use these PVs, more than max_frozen (%d): nothing frozen. Freeze them in "
                             "batches (the dr_common role does, see ocpdr_freeze_max_vms): %s"
                             % (len(running), prm["max_frozen"], ", ".join(fp.vm_key(v["namespace"], v["name"]) for v in running)),
                         **result)
    frozen_at = time.time()
    tried = pool_map(lambda v: freeze_one(api, v, prm["unfreeze_timeout"]), running)
    try:
        done = dict((fp.vm_key(v["namespace"], v["name"]), v) for v in tried)
        vms = [done.get(fp.vm_key(v["namespace"], v["name"]), dict(v, frozen=False, freeze_error="", thaw_needed=False))
               for v in p["vms"]]
        vols = fp.consistency([fp.obj_name(o) for o in p["pvs"]], p["pv_vms"], vms)
    except Exception as e:  # noqa: BLE001 - never leave a guest frozen behind a failure
        recs = pool_map(lambda v: thaw_one(api, v), fp.thaw_targets(tried))
        module.fail_json(msg="freeze failed after freezing %d VM(s) (%s: %s); thawed again: %s" % (
            len(recs), type(e).__name__, api.redact(e), ", ".join("%s/%s %s" % (
                r["namespace"], r["name"], "ok" if r["thawed"] else r["error"]) for r in recs) or "none"))
    result.update(vms=vms, volumes=vols, consistency=dict((n, v["consistency"]) for n, v in vols.items()),
                  frozen_at=frozen_at, frozen_count=len([v for v in vms if v["frozen"]]))
    if prm["capture"]:
        result.update(capture_and_thaw(api, capture_spec(prm["capture"]), vms))
    module.exit_json(changed=result["frozen_count"] > 0, **result)


def capture_spec(c):
    """The capture parameter with its types made sure (Jinja renders nested
    values as strings); ValueError names a bad one."""
    o = dict(c.get("options") or {})
    try:
        o["timeout"] = int(o.get("timeout") or 0)
        o["lock_timeout"] = int(o.get("lock_timeout") or 600)
    except (TypeError, ValueError):
        raise ValueError("capture.options timeout and lock_timeout must be whole seconds")
    if not o.get("root") or o.get("method") not in ("reflink", "command", "none"):
        raise ValueError("capture.options needs root and a method (reflink, command, none)")
    if not isinstance(o.get("command") or [], list):
        raise ValueError("capture.options.command must be a list (an argv)")
    if not c.get("host"):
        raise ValueError("capture.host is required")
    out = dict(c, options=o, entries=list(c.get("entries") or []))
    out["become"] = str(c.get("become")).lower() in ("true", "1", "yes")
    return out


def capture_argv(c):
    """ssh to the primary NFS host (as Ansible reaches it) running the capture
    program of module_utils/ocpdr_points.py with the host's Python."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(c.get("port") or 22)]
    if c.get("key"):
        argv += ["-i", c["key"]]
    argv += shlex.split(c.get("common_args") or "") + shlex.split(c.get("extra_args") or "")
    argv.append(("%s@" % c["user"] if c.get("user") else "") + c["host"])
    code = "import base64;exec(base64.b64decode('%s'))" % base64.b64encode(rp.capture_program().encode()).decode()
    remote = "%s -c %s" % (shlex.quote(c.get("python") or "/usr/bin/python3"), shlex.quote(code))
    return argv + [("sudo -n " if c.get("become") else "") + remote]


def run_capture(c):
    """(records, error): the capture of c["entries"] on the primary NFS host,
    bounded by c["options"]["timeout"] (the freeze budget's share) plus a margin."""
    limit = c["options"].get("timeout") or 0
    payload = json.dumps({"entries": c.get("entries") or [], "options": c["options"]}).encode()
    try:
        proc = subprocess.run(capture_argv(c), input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=(limit + 3) if limit > 0 else 600)
    except subprocess.TimeoutExpired:
        return [], "capture timed out after %ss (freeze budget)" % limit
    except OSError as e:
        return [], "capture: cannot run ssh: %s" % e
    if proc.returncode != 0:
        return [], "capture on the primary NFS host failed: %s" % proc.stderr.decode(errors="replace").strip()[-500:]
    try:
        return json.loads(proc.stdout.decode()), ""
    except ValueError:
        return [], "capture on the primary NFS host answered no records: %s" % proc.stdout.decode(errors="replace")[-300:]


def capture_and_thaw(api, c, vms):
    """Capture while frozen, then thaw every VM this call may have frozen -
    also when the capture fails. One call keeps the guests frozen only for
    the clone (docs/recovery-points.md): no task boundary in between."""
    started = time.time()
    try:
        caps, err = run_capture(c)
    finally:
        thawed = pool_map(lambda v: thaw_one(api, v), fp.thaw_targets(vms))
        thawed_at = time.time()
        ok = set((r["namespace"], r["name"]) for r in thawed if r["thawed"])
        for v in vms:
            if (v["namespace"], v["name"]) in ok:
                v["thaw_needed"] = False
    return dict(captures=caps, capture_failed=bool(err), capture_msg=err, capture_timed_out="timed out" in err,
                capture_seconds=round(thawed_at - started, 3), thawed=thawed, thawed_at=thawed_at)


def run_thawed(module, api):
    targets = fp.thaw_targets(module.params["vms"])
    if module.check_mode:
        recs = [{"namespace": v["namespace"], "name": v["name"], "thawed": False, "error": "", "note": "check mode: not thawed"}
                for v in targets]
        module.exit_json(changed=bool(recs), thawed=recs, thawed_at=time.time())
    recs = pool_map(lambda v: thaw_one(api, v), targets)
    thawed_at = time.time()
    failed = [r for r in recs if r["error"]]
    if failed:
        module.fail_json(msg="could not thaw %d of %d VM(s): %s. Each guest agent thaws by itself after its unfreezeTimeout; "
                             "check the VMs now" % (len(failed), len(recs), "; ".join(
                                 "%s/%s: %s" % (r["namespace"], r["name"], r["error"]) for r in failed)),
                         changed=any(r["thawed"] for r in recs), thawed=recs, thawed_at=thawed_at)
    module.exit_json(changed=bool(recs), thawed=recs, thawed_at=thawed_at)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kubeconfig=dict(type="path", required=True),
            context=dict(type="str"),
            state=dict(type="str", required=True, choices=["frozen", "thawed"]),
            pvs=dict(type="list", elements="dict", default=[]),
            vms=dict(type="list", elements="dict", default=[]),
            storage_classes=dict(type="list", elements="str", default=[]),
            unfreeze_timeout=dict(type="int", default=60),
            max_frozen=dict(type="int", default=10),
            request_timeout=dict(type="int", default=30),
            capture=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    prm = module.params
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes (python3-kubernetes)"), exception=KUBERNETES_ERROR)
    if prm["unfreeze_timeout"] < 1 or prm["max_frozen"] < 0 or prm["request_timeout"] < 1:
        module.fail_json(msg="unfreeze_timeout and request_timeout must be at least 1, max_frozen not negative")
    if prm["state"] == "thawed":
        try:
            fp.check_vms(prm["vms"])
        except ValueError as e:
            module.fail_json(msg=str(e))
    if prm["capture"]:
        try:
            capture_spec(prm["capture"])
        except ValueError as e:
            module.fail_json(msg=str(e))
    try:
        api = Api(prm["kubeconfig"], prm["context"], prm["request_timeout"])
    except Exception as e:  # noqa: BLE001 - a bad kubeconfig: say why, without its content
        module.fail_json(msg="cannot load the kubeconfig %s: %s" % (prm["kubeconfig"], fp.redact(type(e).__name__ + ": " + str(e), [])))
    try:
        if prm["state"] == "frozen":
            run_frozen(module, api)
        run_thawed(module, api)
    except ApiError as e:
        module.fail_json(msg="primary API: %s" % e)


if __name__ == "__main__":
    main()
