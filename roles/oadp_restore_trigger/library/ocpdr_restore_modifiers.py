#!/usr/bin/python
# -*- coding: utf-8 -*-
# ocpv-dr: build the Velero resource modifiers of a restore at the other site
# (site mapping of networks and MAC addresses). The logic is
# module_utils/ocpdr_sitemap.py; this module only takes and returns data.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ocpdr_restore_modifiers
short_description: Velero resource modifiers that map restored VMs' networks and MACs to the restoring site
description:
  - From the VirtualMachines of a Velero backup, builds the resource modifiers document (version v1) that a Restore
    references through spec.resourceModifier, so each VM is created already pointing at the restoring site's networks
    (and without its MAC addresses when regenerate is asked), never started with the other site's.
  - Pure computation, no API call; check mode returns the same result.
options:
  vms:
    description: VirtualMachine objects as in the backup (metadata.name/namespace, spec.template.spec).
    type: list
    elements: dict
    required: true
  network_map:
    description: Source network (multus networkName exactly as the VM names it, name or namespace/name) to the network at this site.
    type: dict
    default: {}
  mac_policy:
    description: keep the VMs' MAC addresses, or regenerate (remove them; KubeVirt assigns new ones).
    type: str
    default: keep
    choices: [keep, regenerate]
  isolate:
    description: Drills - keep only the pod network and the networks network_map names; drop every other network and its interfaces.
    type: bool
    default: false
  map_by:
    description: What network_map's keys are - network (a VM network's multus networkName) or name (the VM's own network name, as dr_drill_network_map).
    type: str
    default: network
    choices: [network, name]
  run_strategy:
    description: Set each VM's spec.runStrategy (removing the deprecated spec.running); empty leaves it as backed up.
    type: str
    default: ""
author: ocpv-dr
"""

RETURN = r"""
modifiers:
  description: The resource modifiers document (version, resourceModifierRules), one rule per VM that changes.
  type: dict
  returned: always
rules:
  description: Number of rules (VMs changed).
  type: int
  returned: always
vms:
  description: Per VM, whether it is patched, the networks the map does not cover (left as they are) and the MAC policy.
  type: list
  returned: always
"""

import os
import sys

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import ocpdr_sitemap as sm
except ImportError:  # imported by path (pytest): the role's module_utils beside library/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
    import ocpdr_sitemap as sm


def main():
    module = AnsibleModule(argument_spec=dict(
        vms=dict(type="list", elements="dict", required=True),
        network_map=dict(type="dict", default={}),
        mac_policy=dict(type="str", default="keep", choices=list(sm.MAC_POLICIES)),
        isolate=dict(type="bool", default=False),
        run_strategy=dict(type="str", default=""),
        map_by=dict(type="str", default="network", choices=["network", "name"]),
    ), supports_check_mode=True)
    p = module.params
    try:
        doc, report = sm.modifiers(p["vms"], p["network_map"] or {}, p["mac_policy"], p["isolate"], p["run_strategy"] or None,
                                   p["map_by"] == "name")
    except sm.SiteMapError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, modifiers=doc, rules=len(doc["resourceModifierRules"]), vms=report)


if __name__ == "__main__":
    main()
