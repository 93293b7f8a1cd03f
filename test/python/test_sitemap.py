# pytest for roles/oadp_restore_trigger/module_utils/ocpdr_sitemap.py: the
# Velero resource modifiers a restore uses to map VM networks and MACs.
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                 "roles", "oadp_restore_trigger", "module_utils")))
import ocpdr_sitemap as sm  # noqa: E402


def vm(name, nets, ifaces, ns="vms"):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"spec": {"networks": nets, "domain": {"devices": {"interfaces": ifaces}}}}}}


POD = {"name": "default", "pod": {}}
VLAN = {"name": "data", "multus": {"networkName": "prod/vlan100"}}
IF_POD = {"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:01"}
IF_VLAN = {"name": "data", "bridge": {}, "macAddress": "02:00:00:00:00:02"}


def patches(doc, name):
    for r in doc["resourceModifierRules"]:
        if r["conditions"]["resourceNameRegex"] == "^%s$" % name:
            return {p["path"].rsplit("/", 1)[-1]: json.loads(p["value"]) for p in r["patches"]}
    return None


@pytest.mark.parametrize("case", [
    dict(id="mapped network", net_map={"prod/vlan100": "dr/vlan200"}, mac="keep",
         want_nets=[POD, {"name": "data", "multus": {"networkName": "dr/vlan200"}}], want_ifaces=None, unmapped=[]),
    dict(id="unmapped network stays and is reported", net_map={"other": "x"}, mac="keep",
         want_nets=None, want_ifaces=None, unmapped=["prod/vlan100"]),
    dict(id="MACs regenerated", net_map={}, mac="regenerate",
         want_nets=None, want_ifaces=[{"name": "default", "masquerade": {}}, {"name": "data", "bridge": {}}],
         unmapped=["prod/vlan100"]),
    dict(id="both", net_map={"prod/vlan100": "vlan200"}, mac="regenerate",
         want_nets=[POD, {"name": "data", "multus": {"networkName": "vlan200"}}],
         want_ifaces=[{"name": "default", "masquerade": {}}, {"name": "data", "bridge": {}}], unmapped=[]),
], ids=lambda c: c["id"])
def test_modifiers(case):
    doc, report = sm.modifiers([vm("db", [POD, VLAN], [IF_POD, IF_VLAN])], case["net_map"], case["mac"])
    assert doc["version"] == "v1"
    got = patches(doc, "db")
    if case["want_nets"] is None and case["want_ifaces"] is None:
        assert got is None and doc["resourceModifierRules"] == []
    else:
        assert got.get("networks") == case["want_nets"]
        assert got.get("interfaces") == case["want_ifaces"]
        rule = doc["resourceModifierRules"][0]
        assert rule["conditions"] == {"groupResource": "virtualmachines.kubevirt.io", "namespaces": ["vms"],
                                      "resourceNameRegex": "^db$"}
    assert report == [{"namespace": "vms", "name": "db", "patched": got is not None,
                       "unmapped_networks": case["unmapped"], "mac": case["mac"]}]


def test_values_are_json_text_for_velero():
    # Velero's JSONPatch.Value is a string; text starting with [ is spliced in as JSON.
    doc, _ = sm.modifiers([vm("db", [POD, VLAN], [IF_POD])], {"prod/vlan100": "vlan200"}, "keep")
    for p in doc["resourceModifierRules"][0]["patches"]:
        assert isinstance(p["value"], str) and p["value"].startswith("[") and p["operation"] == "replace"


def test_only_changed_vms_get_rules_and_names_are_anchored():
    vms = [vm("a.b", [POD], [IF_POD]), vm("web", [POD, VLAN], [IF_VLAN], ns="shop")]
    doc, report = sm.modifiers(vms, {"prod/vlan100": "vlan200"}, "keep")
    assert [r["conditions"]["resourceNameRegex"] for r in doc["resourceModifierRules"]] == ["^web$"]
    assert [(r["name"], r["patched"]) for r in report] == [("web", True), ("a.b", False)]  # by namespace, name
    # a dot in a name must not match any character
    doc, _ = sm.modifiers([vm("a.b", [POD], [IF_POD])], {}, "regenerate")
    assert doc["resourceModifierRules"][0]["conditions"]["resourceNameRegex"] == "^a\\.b$"


@pytest.mark.parametrize("net_map,mac,msg", [
    ({"prod/vlan100": "Bad Name"}, "keep", "not a network name"),
    ({"prod/vlan100": 5}, "keep", "not a network name"),
    (["prod/vlan100"], "keep", "must be a mapping"),
    ({}, "random", "MAC policy"),
])
def test_bad_maps_are_refused(net_map, mac, msg):
    with pytest.raises(sm.SiteMapError, match=msg):
        sm.modifiers([vm("db", [POD, VLAN], [IF_POD])], net_map, mac)


def test_hostile_vm_name_is_refused():
    with pytest.raises(sm.SiteMapError, match="not a valid object name"):
        sm.modifiers([vm("db$|.*", [POD], [IF_POD])], {}, "regenerate")


def test_drill_isolation_keeps_pod_and_mapped_networks_only():
    other = {"name": "backup", "multus": {"networkName": "prod/backup"}}
    if_other = {"name": "backup", "bridge": {}}
    v = vm("db", [POD, VLAN, other], [IF_POD, IF_VLAN, if_other])
    doc, report = sm.modifiers([v], {"prod/vlan100": "drill/isolated"}, "regenerate", isolate=True, run_strategy="Always")
    got = patches(doc, "db")
    assert got["networks"] == [POD, {"name": "data", "multus": {"networkName": "drill/isolated"}}]
    assert got["interfaces"] == [{"name": "default", "masquerade": {}}, {"name": "data", "bridge": {}}]
    assert got["runStrategy"] == "Always"
    assert report[0]["unmapped_networks"] == ["prod/backup"]
    # nothing mapped: only the pod network is left
    doc, _ = sm.modifiers([v], {}, "keep", isolate=True)
    assert patches(doc, "db")["networks"] == [POD]
    assert patches(doc, "db")["interfaces"] == [IF_POD]


def test_run_strategy_replaces_deprecated_running():
    v = vm("db", [POD], [IF_POD])
    v["spec"]["running"] = False
    doc, _ = sm.modifiers([v], {}, "keep", run_strategy="Always")
    ops = [(p["operation"], p["path"]) for p in doc["resourceModifierRules"][0]["patches"]]
    assert ops == [("remove", "/spec/running"), ("add", "/spec/runStrategy")]
    # already Always: no rule
    v = vm("db", [POD], [IF_POD])
    v["spec"]["runStrategy"] = "Always"
    assert sm.modifiers([v], {}, "keep", run_strategy="Always")[0]["resourceModifierRules"] == []
    with pytest.raises(sm.SiteMapError, match="runStrategy"):
        sm.modifiers([v], {}, "keep", run_strategy="Sometimes")


def test_drill_map_by_vm_network_name():
    doc, _ = sm.modifiers([vm("db", [POD, VLAN], [IF_POD, IF_VLAN])], {"data": "drill-net"}, "keep",
                          isolate=True, by_name=True)
    assert patches(doc, "db")["networks"] == [POD, {"name": "data", "multus": {"networkName": "drill-net"}}]
