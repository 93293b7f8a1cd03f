# -*- coding: utf-8 -*-
"""Filters that keep data from the clusters as data.

Objects read from a backup (or any other place the tenants write to) may hold
Jinja in names, labels or annotations. ``from_json`` returns plain strings,
which Ansible templates again whenever the variable is used, so a VM
annotation could run a command on the Ansible host during a failover.
``ocpdr_from_json_unsafe`` parses JSON and marks every string unsafe; it is
the only way the roles turn cluster text into variables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.utils.unsafe_proxy import wrap_var


def ocpdr_from_json_unsafe(data):
    """Parse JSON text and return it with every string marked unsafe."""
    try:
        return wrap_var(json.loads(to_text(data, errors="surrogate_or_strict")))
    except ValueError as e:
        raise AnsibleFilterError("ocpdr_from_json_unsafe: %s" % e)


class FilterModule(object):
    def filters(self):
        return {"ocpdr_from_json_unsafe": ocpdr_from_json_unsafe}
