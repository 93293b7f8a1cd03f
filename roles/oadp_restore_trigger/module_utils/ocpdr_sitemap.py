# -*- coding: utf-8 -*-
# ocpv-dr: the site mapping applied when VMs are restored at the other site
# (docs/lifecycle.md, "Site mapping"). Pure functions over the VM objects of
# the backup: no API client, no I/O. The ocpdr_restore_modifiers module
# imports it as ansible.module_utils.ocpdr_sitemap, pytest by path.
"""Velero resource modifiers that map each VM's networks and MAC addresses."""

from __future__ import absolute_import, division, print_function

import json
import re

__metaclass__ = type

MAC_POLICIES = ("keep", "regenerate")
RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once")
VM_GROUP_RESOURCE = "virtualmachines.kubevirt.io"
# A Kubernetes object name or a namespace/name reference.
NET_RE = re.compile(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SiteMapError(ValueError):
    """A network map or VM the mapping refuses (said before anything is restored)."""


def check_map(network_map, mac_policy):
    """Raise SiteMapError unless the map is {source: target} of network
    references and the MAC policy is known."""
    if mac_policy not in MAC_POLICIES:
        raise SiteMapError("MAC policy %r: want one of %s" % (mac_policy, ", ".join(MAC_POLICIES)))
    if not isinstance(network_map, dict):
        raise SiteMapError("the network map must be a mapping of source network to DR network")
    for src, dst in network_map.items():
        for ref in (src, dst):
            if not isinstance(ref, str) or not NET_RE.match(ref):
                raise SiteMapError("network map %r: %r is not a network name or namespace/name" % (src, ref))


def _spec(vm):
    return ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}


def mapped_networks(vm, network_map, isolate=False, by_name=False):
    """(networks after mapping, the multus names the map does not cover).
    The map's keys are multus networkNames, or with by_name the VM's own
    network names (drills). isolate (drills): only the pod network and the
    mapped networks stay."""
    out, unmapped = [], []
    for net in _spec(vm).get("networks") or []:
        multus = net.get("multus")
        if not multus or "networkName" not in multus:
            if not isolate or "pod" in net:
                out.append(net)
            continue
        name = net.get("name") if by_name else multus["networkName"]
        if name in network_map:
            net = dict(net, multus=dict(multus, networkName=network_map[name]))
        else:
            unmapped.append(name)
            if isolate:
                continue
        out.append(net)
    return out, unmapped


def mapped_interfaces(vm, mac_policy, networks):
    """The VM's interfaces of the kept networks, without macAddress when the
    policy regenerates them."""
    ifaces = ((_spec(vm).get("domain") or {}).get("devices") or {}).get("interfaces") or []
    kept = set(n.get("name") for n in networks)
    out = [i for i in ifaces if i.get("name") in kept]
    if mac_policy == "regenerate":
        out = [dict((k, v) for k, v in i.items() if k != "macAddress") for i in out]
    return out


def run_patches(vm, run_strategy):
    """Patches that make the VM's runStrategy run_strategy (dropping the
    deprecated spec.running, which KubeVirt refuses beside it)."""
    spec = vm.get("spec") or {}
    if not run_strategy or (spec.get("runStrategy") == run_strategy and "running" not in spec):
        return []
    out = [{"operation": "remove", "path": "/spec/running"}] if "running" in spec else []
    return out + [{"operation": "add", "path": "/spec/runStrategy", "value": json.dumps(run_strategy)}]


def replace(path, value):
    """A JSON patch replace as Velero's resource modifiers take it: the value
    is a string, JSON text here (Velero splices text that starts with [ or {
    into the patch as it is)."""
    return {"operation": "replace", "path": path, "value": json.dumps(value, sort_keys=True, separators=(",", ":"))}


def vm_rule(vm, network_map, mac_policy, isolate=False, run_strategy=None, by_name=False):
    """(one resource modifier rule for vm or None when nothing changes, unmapped names)."""
    meta = vm.get("metadata") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "")
    if not NAME_RE.match(name) or not NAME_RE.match(ns):
        raise SiteMapError("VM %r in namespace %r: not a valid object name" % (name, ns))
    spec = _spec(vm)
    nets, unmapped = mapped_networks(vm, network_map, isolate, by_name)
    ifaces = mapped_interfaces(vm, mac_policy, nets)
    patches = run_patches(vm, run_strategy)
    base = "/spec/template/spec"
    if nets != (spec.get("networks") or []):
        patches.append(replace(base + "/networks", nets))
    if ifaces != (((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []):
        patches.append(replace(base + "/domain/devices/interfaces", ifaces))
    if not patches:
        return None, unmapped
    rule = {"conditions": {"groupResource": VM_GROUP_RESOURCE, "namespaces": [ns],
                           "resourceNameRegex": "^%s$" % re.escape(name)},
            "patches": patches}
    return rule, unmapped


def modifiers(vms, network_map, mac_policy, isolate=False, run_strategy=None, by_name=False):
    """The Velero resource modifiers document (version v1) for the VMs of a
    backup, and a report: per VM the networks mapped, the ones the map does
    not name (kept, or with isolate removed) and the MAC policy."""
    check_map(network_map, mac_policy)
    if run_strategy is not None and run_strategy not in RUN_STRATEGIES:
        raise SiteMapError("runStrategy %r: want one of %s" % (run_strategy, ", ".join(RUN_STRATEGIES)))
    rules, report = [], []
    for vm in sorted(vms, key=lambda v: ((v.get("metadata") or {}).get("namespace", ""), (v.get("metadata") or {}).get("name", ""))):
        rule, unmapped = vm_rule(vm, network_map, mac_policy, isolate, run_strategy, by_name)
        meta = vm.get("metadata") or {}
        report.append({"namespace": meta.get("namespace"), "name": meta.get("name"), "patched": rule is not None,
                       "unmapped_networks": unmapped, "mac": mac_policy})
        if rule:
            rules.append(rule)
    return {"version": "v1", "resourceModifierRules": rules}, report
