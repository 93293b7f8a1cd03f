# The module as Ansible runs it: AnsiballZ must ship the role's module_utils
# (ocpdr_points), the argument spec must take the new modes and options.
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROLE, SERVER, write

TASKS = """---
- name: Capture
  ocpdr_sync:
    mode: capture
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    capture_method: command
    capture_command: [cp, -a, --, "{src}", "{dst}"]
  register: cap
- name: Capture again
  ocpdr_sync:
    mode: capture
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
  register: cap_reflink
- name: Release
  ocpdr_sync:
    mode: capture_release
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    capture_keep: 1
  register: rel
- name: List the points
  ocpdr_sync:
    mode: points
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    dr_export_root: "{{ dr }}"
  register: listing
- name: Prune
  ocpdr_sync:
    mode: points_prune
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    dr_export_root: "{{ dr }}"
  register: prune
- name: Points after a push
  ocpdr_sync:
    mode: point
    sync_results: []
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    dr_export_root: "{{ dr }}"
  register: point
- name: Rewrite from the latest point
  ocpdr_sync:
    mode: rewrite
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    dr_export_root: "{{ dr }}"
    dr_server: dr.example
    recovery_point: "2026-12-02T11:00:00Z"
  register: rewrite
- name: A bad recovery point
  ocpdr_sync:
    mode: rewrite
    pvs: "{{ pvs }}"
    primary_server: "%(server)s"
    primary_export_root: "{{ primary }}"
    dr_export_root: "{{ dr }}"
    dr_server: dr.example
    recovery_point: yesterday
  register: bad
  ignore_errors: true
- name: Keep the results
  ansible.builtin.copy:
    dest: "{{ out }}"
    content: "{{ {'cap': cap, 'cap_reflink': cap_reflink, 'rel': rel, 'listing': listing, 'prune': prune,
                  'point': point, 'rewrite': rewrite, 'bad': bad} | to_json }}"
    mode: "0644"
""" % {"server": SERVER}


def test_module_runs_under_ansible(tmp_path, noreflink):
    if not shutil.which("ansible-playbook"):
        pytest.skip("ansible-playbook is not installed")
    role = tmp_path / "roles" / "ocpdr_probe"
    (role / "tasks").mkdir(parents=True)
    os.symlink(os.path.join(ROLE, "library"), str(role / "library"))
    os.symlink(os.path.join(ROLE, "module_utils"), str(role / "module_utils"))
    (role / "tasks" / "main.yml").write_text(TASKS)
    primary, dr = os.path.join(noreflink, "primary"), os.path.join(noreflink, "dr")
    os.makedirs(dr)
    write(os.path.join(primary, "ns", "pv-1", "disk.img"), "data")
    pvs = [{"metadata": {"name": "pv-1"}, "spec": {"nfs": {"server": SERVER, "path": os.path.join(primary, "ns", "pv-1")}}}]
    out = str(tmp_path / "out.json")
    extra = str(tmp_path / "vars.json")
    with open(extra, "w") as f:
        json.dump({"pvs": pvs, "primary": primary, "dr": dr, "out": out}, f)
    (tmp_path / "play.yml").write_text("---\n- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles: [ocpdr_probe]\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\nroles_path = %s\ninterpreter_python = /usr/bin/python3\n" % (tmp_path / "roles"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_REMOTE_TMP=str(tmp_path / "remote-tmp"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local-tmp"))
    r = subprocess.run(["ansible-playbook", "-e", "@" + extra, str(tmp_path / "play.yml")], cwd=str(tmp_path), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, r.stdout.decode()[-3000:]
    with open(out) as f:
        res = json.load(f)
    cap = res["cap"]["captures"][0]
    assert cap["status"] == "ok" and cap["method"] == "command" and cap["path"].startswith(primary + "/.ocpdr-captures/ns/pv-1/")
    assert res["cap"]["changed"] is True
    assert res["cap_reflink"]["captures"][0]["status"] == "unsupported"
    assert res["rel"]["captures"][0]["status"] == "released" and res["rel"]["captures"][0]["kept"] == [os.path.basename(cap["path"])]
    assert res["listing"]["points"] == []
    assert res["prune"]["retention"][0]["status"] == "pruned"
    assert res["point"]["results"] == []
    assert res["rewrite"]["results"][0]["status"] == "failed" and "no recovery point at or before" in res["rewrite"]["results"][0]["reason"]
    assert res["rewrite"]["pvs"] == []
    assert res["bad"]["failed"] and "recovery_point" in res["bad"]["msg"]
