# The freeze plan (module_utils/ocpdr_freezeplan.py): which VMs use which PVs,
# sibling disks, consistency per PV, batching; and the ocpdr_freeze module's
# API calls against a fake API (no cluster).
import json

import pytest

import ocpdr_freezeplan as fp

SERVER = "nfs.example"


def pv(name, path, ns=None, claim=None, cls="nfs-dynamic", csi=False):
    s = {"storageClassName": cls}
    if csi:
        s["csi"] = {"driver": "nfs.csi.k8s.io", "volumeHandle": "%s#srv#%s##" % (SERVER, path.split("/srv/")[-1]),
                    "volumeAttributes": {"server": SERVER, "share": "/srv", "subdir": path.split("/srv/")[-1]}}
    else:
        s["nfs"] = {"server": SERVER, "path": path}
    if ns:
        s["claimRef"] = {"namespace": ns, "name": claim}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": s}


def pvc(ns, name, volume=None):
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"volumeName": volume} if volume else {}}


def vm(ns, name, status="Running", claims=(), dvs=()):
    vols = [{"name": "d%d" % i, "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    vols += [{"name": "v%d" % i, "dataVolume": {"name": d}} for i, d in enumerate(dvs)]
    vols.append({"name": "cloudinit", "cloudInitNoCloud": {"userData": "x"}})
    return {"metadata": {"namespace": ns, "name": name}, "status": {"printableStatus": status},
            "spec": {"template": {"spec": {"volumes": vols}}}}


# ---------------------------------------------------------------- sources, names

def test_nfs_source_forms():
    assert fp.nfs_source(pv("a", "/srv/x/")) == (SERVER, "/srv/x")
    assert fp.nfs_source(pv("a", "/srv/ns-c-pv", csi=True)) == (SERVER, "/srv/ns-c-pv")
    handle_only = {"spec": {"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": SERVER + "#srv#sub##"}}}
    assert fp.nfs_source(handle_only) == (SERVER, "/srv/sub")
    assert fp.nfs_source({"spec": {"csi": {"driver": "rbd.csi.ceph.com"}}}) is None
    assert fp.nfs_source({"kind": "NFSDirectory", "server": SERVER, "path": "/srv/d"}) == (SERVER, "/srv/d")
    assert fp.nfs_source({"spec": {"hostPath": {"path": "/x"}}}) is None


def test_vm_claims_both_kinds_once():
    v = vm("ns", "a", claims=["root", "data", "root"], dvs=["dv1"])
    assert fp.vm_claims(v) == ["root", "data", "dv1"]
    assert fp.vm_claims({"spec": {}}) == []


def test_resolve_nfs_directory_to_pvs():
    cluster = [pv("p1", "/srv/a", "ns", "c1"), pv("p2", "/srv/b", "ns", "c2")]
    out, notes = fp.resolve([{"kind": "NFSDirectory", "server": SERVER, "path": "/srv/b/"},
                             {"kind": "NFSDirectory", "server": SERVER, "path": "/srv/none"},
                             {"metadata": {"name": "p1"}}, pv("p2", "/srv/b")], cluster)
    assert [fp.obj_name(o) for o in out] == ["p2", "/srv/none", "p1"]
    # The cluster's current object is used (it has the claimRef).
    assert out[2]["spec"]["claimRef"]["name"] == "c1"
    assert len(notes) == 1 and "/srv/none" in notes[0]


# ---------------------------------------------------------------- expand

def cluster():
    pvs = [pv("root-a", "/srv/ra", "ns", "root-a"), pv("data-a", "/srv/da", "ns", "data-a"),
           pv("shared", "/srv/sh", "ns", "shared"), pv("root-b", "/srv/rb", "ns", "root-b"),
           pv("ceph", "/srv/ceph", "ns", "ceph", cls="ceph-rbd"), pv("lonely", "/srv/lo", "ns", "lonely"),
           pv("root-c", "/srv/rc", "other", "root-c")]
    pvcs = [pvc("ns", n, n) for n in ("root-a", "data-a", "shared", "root-b", "ceph", "lonely")] + [pvc("ns", "pending")]
    vms = [vm("ns", "a", claims=["root-a", "shared"], dvs=["data-a"]),
           vm("ns", "b", status="Stopped", claims=["root-b", "shared", "ceph", "pending", "missing"])]
    return pvs, pvcs, vms


def test_expand_adds_siblings_transitively_and_skips_others():
    pvs, pvcs, vms = cluster()
    p = fp.expand([pvs[0]], pvs, pvcs, vms, ["nfs-dynamic"])
    names = [fp.obj_name(o) for o in p["pvs"]]
    # root-a -> VM a -> data-a, shared -> VM b (shares "shared") -> root-b.
    assert names[0] == "root-a"
    assert set(names) == {"root-a", "shared", "data-a", "root-b"}
    assert set(p["added"]) == {"shared", "data-a", "root-b"}
    assert p["pv_vms"]["shared"] == ["ns/a", "ns/b"]
    assert p["pv_vms"]["root-a"] == ["ns/a"]
    b = [v for v in p["vms"] if v["name"] == "b"][0]
    assert not b["running"] and b["status"] == "Stopped"
    reasons = dict((d["pvc"], d["reason"]) for d in b["skipped_disks"])
    assert "not replicated" in reasons["ceph"]
    assert reasons["pending"] == "PVC not bound"
    assert reasons["missing"] == "PVC not found"


def test_expand_pv_without_vm():
    pvs, pvcs, vms = cluster()
    p = fp.expand([pvs[5]], pvs, pvcs, vms)
    assert [fp.obj_name(o) for o in p["pvs"]] == ["lonely"]
    assert p["vms"] == [] and p["pv_vms"] == {}


def test_expand_without_class_filter_adds_every_nfs_sibling():
    pvs, pvcs, vms = cluster()
    p = fp.expand([pvs[3]], pvs, pvcs, vms, [])
    assert "ceph" in [fp.obj_name(o) for o in p["pvs"]]  # an NFS PV, any class


# ---------------------------------------------------------------- consistency

def test_consistency_levels():
    pv_vms = {"p1": ["ns/a"], "p2": ["ns/a", "ns/b"], "p3": [], "p4": ["ns/c"], "p5": ["ns/d"]}
    vms = [{"namespace": "ns", "name": "a", "running": True, "status": "Running", "frozen": True},
           {"namespace": "ns", "name": "b", "running": True, "status": "Running", "frozen": False, "freeze_error": "no guest agent"},
           {"namespace": "ns", "name": "c", "running": False, "status": "Stopped"},
           {"namespace": "ns", "name": "d", "running": False, "status": "Migrating"}]
    c = fp.consistency(["p1", "p2", "p3", "p4", "p5"], pv_vms, vms)
    assert c["p1"]["consistency"] == fp.APP and c["p1"]["frozen"] == ["ns/a"]
    assert c["p2"]["consistency"] == fp.CRASH and "no guest agent" in c["p2"]["consistency_reason"]
    assert c["p3"]["consistency"] == fp.CRASH and "no VM" in c["p3"]["consistency_reason"]
    assert c["p4"]["consistency"] == fp.APP
    assert c["p5"]["consistency"] == fp.CRASH and "Migrating" in c["p5"]["consistency_reason"]


def test_planned_assumes_every_running_vm_frozen():
    vms = fp.planned([{"namespace": "n", "name": "a", "running": True}, {"namespace": "n", "name": "b", "running": False}])
    assert [v["frozen"] for v in vms] == [True, False] and all(v["planned"] for v in vms)


# ---------------------------------------------------------------- batches

def run(n):
    return {"namespace": "ns", "name": n, "running": True}


def test_batches_respect_limit_and_keep_groups():
    names = ["a1", "a2", "b1", "c1", "d1", "free"]
    pv_vms = {"a1": ["ns/a"], "a2": ["ns/a", "ns/x"], "b1": ["ns/b"], "c1": ["ns/c"], "d1": ["ns/d"]}
    vms = [run(n) for n in ("a", "x", "b", "c", "d")]
    out = fp.batches(names, pv_vms, vms, 2)
    for b in out:
        assert b["running"] <= 2 and not b["oversize"]
    groups = [set(b["pvs"]) for b in out]
    # a and x share a2: a1 and a2 stay together.
    assert any({"a1", "a2"} <= g for g in groups)
    assert out[-1] == {"pvs": ["free"], "vms": [], "running": 0, "oversize": False}
    assert sorted(p for b in out for p in b["pvs"]) == sorted(names)
    assert sum(b["running"] for b in out) == 5


def test_batches_oversize_group_alone():
    pv_vms = {"sh": ["ns/a", "ns/b", "ns/c"], "o": ["ns/d"]}
    vms = [run(n) for n in "abcd"]
    out = fp.batches(["sh", "o"], pv_vms, vms, 2)
    big = [b for b in out if b["oversize"]]
    assert len(big) == 1 and big[0]["pvs"] == ["sh"] and big[0]["running"] == 3
    assert "more than the limit of 2" in fp.oversize_error(big[0], 2)
    assert [b["pvs"] for b in out if not b["oversize"]] == [["o"]]


def test_batches_stopped_vms_do_not_count_and_no_limit():
    pv_vms = {"p1": ["ns/s1"], "p2": ["ns/r"]}
    vms = [{"namespace": "ns", "name": "s1", "running": False}, run("r")]
    out = fp.batches(["p1", "p2"], pv_vms, vms, 1)
    assert [(b["pvs"], b["running"]) for b in out] == [(["p2"], 1), (["p1"], 0)]
    one = fp.batches(["p1", "p2"], pv_vms, vms, 0)
    assert len(one) == 1 and one[0]["running"] == 1
    assert fp.batches([], {}, [], 3) == []


# ---------------------------------------------------------------- requests, redaction

def test_subresource_path_refuses_bad_names():
    assert fp.subresource_path("ns", "vm-1", "freeze") == \
        "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/vm-1/freeze"
    for ns, name in (("ns", "../x"), ("ns/x", "a"), ("NS", "a"), ("ns", "")):
        with pytest.raises(ValueError):
            fp.subresource_path(ns, name, "freeze")
    with pytest.raises(ValueError):
        fp.subresource_path("ns", "a", "delete")
    assert fp.freeze_body(60) == {"unfreezeTimeout": "60s"}


def test_thaw_targets_and_check_vms():
    vms = [{"namespace": "n", "name": "a", "frozen": True}, {"namespace": "n", "name": "b", "frozen": False},
           {"namespace": "n", "name": "c", "frozen": False, "thaw_needed": True}]
    assert [v["name"] for v in fp.thaw_targets(vms)] == ["a", "c"]
    fp.check_vms(vms)
    with pytest.raises(ValueError):
        fp.check_vms([{"namespace": "n", "name": "a/../../b"}])


def test_redact():
    text = "GET failed: Authorization: Bearer sha256~SECRETTOKEN123 and sha256~SECRETTOKEN123 again, pw hunter22"
    out = fp.redact(text, ["sha256~SECRETTOKEN123", "hunter22", ""])
    assert "SECRETTOKEN" not in out and "hunter22" not in out
    assert fp.redact("Bearer abc.def", []) == "Bearer <redacted>"


# ---------------------------------------------------------------- the module against a fake API

@pytest.fixture
def freeze_mod():
    pytest.importorskip("ansible.module_utils.basic")
    import ocpdr_freeze
    return ocpdr_freeze


class FakeApi(object):
    """Answers like the API server for a set of objects; records PUTs."""

    def __init__(self, mod, pvs, pvcs, vms, fail=None, kubevirt=True, frozen_state=None):
        self.mod, self.pvs, self.pvcs, self.vms = mod, pvs, pvcs, vms
        self.fail = fail or {}
        self.kubevirt = kubevirt
        self.frozen_state = frozen_state or {}
        self.puts = []
        self.secrets = ["sha256~TOKEN"]

    def redact(self, text):
        return fp.redact(text, self.secrets)

    def request(self, method, path, body=None, query=None):
        if method == "PUT":
            self.puts.append((path, body))
            if path in self.fail:
                status, msg = self.fail[path]
                raise self.mod.ApiError("PUT %s: %s" % (path, msg), status, answered=status >= 400)
            return {}
        if "/virtualmachineinstances/" in path:
            name = path.rsplit("/", 1)[1]
            if name not in self.frozen_state:
                raise self.mod.ApiError("not found", 404, answered=True)
            return {"status": {"fsFreezeStatus": self.frozen_state[name]}}
        raise AssertionError(path)

    def list(self, path, missing_ok=False):
        if path == "/api/v1/persistentvolumes":
            return self.pvs, True
        ns = path.split("/namespaces/")[1].split("/")[0]
        if path.endswith("/virtualmachines"):
            if not self.kubevirt:
                return [], False
            return [v for v in self.vms if v["metadata"]["namespace"] == ns], True
        return [c for c in self.pvcs if c["metadata"]["namespace"] == ns], True


def test_module_plan_and_freeze(freeze_mod):
    pvs, pvcs, vms = cluster()
    api = FakeApi(freeze_mod, pvs, pvcs, vms)
    p = freeze_mod.plan(api, [{"kind": "NFSDirectory", "server": SERVER, "path": "/srv/ra"}], ["nfs-dynamic"])
    assert p["kubevirt"] and fp.obj_name(p["pvs"][0]) == "root-a"
    running = [v for v in p["vms"] if v["running"]]
    assert [v["name"] for v in running] == ["a"]
    v = freeze_mod.freeze_one(api, running[0], 60)
    assert v["frozen"] and v["thaw_needed"] and not v["freeze_error"]
    assert api.puts == [("/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/a/freeze",
                         {"unfreezeTimeout": "60s"})]
    batches = freeze_mod.batch_records(p, 1)
    assert batches[0]["running"] == 1 and isinstance(batches[0]["pvs"][0], dict)


def test_module_freeze_error_is_crash_consistent(freeze_mod):
    pvs, pvcs, vms = cluster()
    path = fp.subresource_path("ns", "a", "freeze")
    api = FakeApi(freeze_mod, pvs, pvcs, vms, fail={path: (500, "guest agent not connected")})
    v = freeze_mod.freeze_one(api, {"namespace": "ns", "name": "a", "running": True}, 60)
    assert not v["frozen"] and not v["thaw_needed"] and "guest agent" in v["freeze_error"]
    c = fp.consistency(["root-a"], {"root-a": ["ns/a"]}, [dict(v, status="Running")])
    assert c["root-a"]["consistency"] == fp.CRASH
    # No answer at all (timeout): the guest may be frozen, so the thaw tries it.
    api = FakeApi(freeze_mod, pvs, pvcs, vms, fail={path: (0, "read timeout")})
    assert freeze_mod.freeze_one(api, {"namespace": "ns", "name": "a", "running": True}, 60)["thaw_needed"]


def test_module_thaw_checks_the_vmi_when_unfreeze_fails(freeze_mod):
    un = fp.subresource_path("ns", "a", "unfreeze")
    api = FakeApi(freeze_mod, [], [], [], fail={un: (500, "no guest agent")}, frozen_state={"a": "frozen"})
    r = freeze_mod.thaw_one(api, {"namespace": "ns", "name": "a"})
    assert not r["thawed"] and "no guest agent" in r["error"]
    api = FakeApi(freeze_mod, [], [], [], fail={un: (500, "no guest agent")}, frozen_state={"a": ""})
    r = freeze_mod.thaw_one(api, {"namespace": "ns", "name": "a"})
    assert r["thawed"] and not r["error"] and "not frozen" in r["note"]
    api = FakeApi(freeze_mod, [], [], [])
    assert freeze_mod.thaw_one(api, {"namespace": "ns", "name": "a"}) == \
        {"namespace": "ns", "name": "a", "thawed": True, "error": "", "note": ""}


def test_module_without_kubevirt(freeze_mod):
    pvs, pvcs, vms = cluster()
    p = freeze_mod.plan(FakeApi(freeze_mod, pvs, pvcs, vms, kubevirt=False), [pvs[0]], [])
    assert not p["kubevirt"] and p["vms"] == [] and "no kubevirt.io" in p["notes"][0]


def test_answer_text_has_no_headers(freeze_mod):
    class E(object):
        status, reason = 403, "Forbidden"
        body = json.dumps({"kind": "Status", "message": "virtualmachineinstances.subresources.kubevirt.io \"a\" is forbidden"})
        headers = {"Www-Authenticate": "Bearer sha256~TOKEN"}
    t = freeze_mod.answer_text(E())
    assert t.startswith("HTTP 403 Forbidden: virtualmachineinstances") and "TOKEN" not in t


def test_api_redacts_kubeconfig_token(freeze_mod, tmp_path):
    pytest.importorskip("kubernetes")
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "sha256~VERYSECRET"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    api = freeze_mod.Api(str(kc), None, 2)
    with pytest.raises(freeze_mod.ApiError) as e:
        api.request("GET", "/api/v1/persistentvolumes?x=sha256~VERYSECRET")
    assert "VERYSECRET" not in str(e.value) and not e.value.answered


# ---------------------------------------------------------------- the contract capture.yml relies on

def test_sync_refuses_a_capture_record_without_path(sync_mod, params, h, tmp_path):
    """roles/dr_common/tasks/capture.yml holds a PV whose capture the freeze
    budget cut with a capture record {status: ok, path: null}: the sync must
    refuse it (never copy the live directory instead) and keep its entry."""
    primary, dr = str(tmp_path / "primary"), str(tmp_path / "dr")
    h.write(primary + "/ns-c-pv/disk.img", "live data")
    h.write(primary + "/ns-d-pv/disk.img", "other")
    p = params(primary, dr, points=False, captures=[
        {"name": "pv", "rel": "ns-c-pv", "status": "ok", "path": None, "time": None, "budget_exceeded": True}])
    entries = sync_mod.map_all(p, [h.pv("pv", primary + "/ns-c-pv"), h.pv("pv2", primary + "/ns-d-pv")])
    sync_mod.run_sync(p, entries, False)
    held, other = entries
    assert held["status"] == "refused" and held["rel"] == "ns-c-pv"
    assert not (tmp_path / "dr" / "ns-c-pv" / "disk.img").exists()
    assert other["status"] == "synced" and other["consistency"] == "inconsistent"
