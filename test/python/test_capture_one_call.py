# The one-call capture (ocpdr_freeze capture=...): freeze, capture on the
# primary NFS host with module_utils/ocpdr_points.py's own code shipped as a
# program, thaw - the thaw always follows, also when the capture fails or
# overruns. Here "the primary NFS host" is this host: the program runs with
# this Python instead of over ssh; everything else is the production code.
import json
import os
import subprocess
import sys
import time

import pytest

import ocpdr_points as rp


@pytest.fixture
def freeze_mod():
    pytest.importorskip("ansible.module_utils.basic", reason="ocpdr_freeze imports Ansible (apt-get install ansible)")
    import ocpdr_freeze
    return ocpdr_freeze


class FakeAPI(object):
    """Records the unfreeze requests and when they came."""

    def __init__(self):
        self.calls = []

    def request(self, method, path, body=None, query=None):
        self.calls.append((time.time(), method, path))
        return {}


def entry(sync_mod, params, h, primary, dr, name):
    live = os.path.join(primary, "ns", name)
    h.write(live + "/disk.img", os.urandom(64 << 10))
    p = params(primary, dr)
    return sync_mod.map_all(p, [h.pv(name, live)], dr=False)[0]


def spec(entries, root, timeout=10):
    return {"host": "primary.example", "entries": entries,
            "options": {"root": root, "method": "reflink", "command": [], "lock_timeout": 5, "timeout": timeout}}


def local(argv):
    """capture_argv's remote command, run here instead of over ssh."""
    return [sys.executable, "-c", argv]


def frozen_vm():
    return {"namespace": "ns", "name": "vm", "frozen": True, "thaw_needed": True}


def test_the_shipped_program_captures_like_mode_capture(xfs, sync_mod, params, h):
    P, D = os.path.join(xfs, "p"), os.path.join(xfs, "d")
    e = entry(sync_mod, params, h, P, D, "pv-a")
    req = json.dumps({"entries": [e], "options": spec([e], P)["options"]}).encode()
    out = subprocess.run([sys.executable, "-c", rp.capture_program()], input=req, stdout=subprocess.PIPE, check=True)
    rec = json.loads(out.stdout.decode())[0]
    assert rec["status"] == "ok", rec
    assert h.tree(rec["path"]) == h.tree(e["primary_path"])
    assert os.path.dirname(rec["path"]) == rp.captures_dir(P, e["rel"])


def test_capture_and_thaw_thaws_after_the_capture(xfs, sync_mod, params, h, freeze_mod, monkeypatch):
    P, D = os.path.join(xfs, "p"), os.path.join(xfs, "d")
    e = entry(sync_mod, params, h, P, D, "pv-b")
    monkeypatch.setattr(freeze_mod, "capture_argv", lambda c: local(rp.capture_program()))
    api, vms = FakeAPI(), [frozen_vm()]
    r = freeze_mod.capture_and_thaw(api, spec([e], P), vms)
    assert not r["capture_failed"], r["capture_msg"]
    assert [c["status"] for c in r["captures"]] == ["ok"]
    cap = r["captures"][0]
    made = rp.parse_time(cap["time"]).timestamp() + cap["duration"]
    assert [c[2].rsplit("/", 1)[-1] for c in api.calls] == ["unfreeze"]
    assert api.calls[0][0] >= made - 0.002, "thawed before the capture was made"
    assert vms[0]["thaw_needed"] is False and r["thawed"][0]["thawed"]


@pytest.mark.parametrize("argv,want", [
    (["false"], "capture on the primary NFS host failed"),
    (["sleep", "30"], "timed out"),
    (["/nonexistent/ssh"], "cannot run ssh"),
])
def test_a_failed_or_overrunning_capture_still_thaws(freeze_mod, monkeypatch, tmp_path, argv, want):
    monkeypatch.setattr(freeze_mod, "capture_argv", lambda c: argv)
    api, vms = FakeAPI(), [frozen_vm()]
    start = time.time()
    r = freeze_mod.capture_and_thaw(api, spec([], str(tmp_path), timeout=1), vms)
    assert r["capture_failed"] and want in r["capture_msg"], r
    assert r["captures"] == []
    assert len(api.calls) == 1 and vms[0]["thaw_needed"] is False
    assert time.time() - start < 10, "the capture was not bounded by its timeout"


def test_capture_argv_is_argv_not_a_shell_line(freeze_mod):
    c = {"host": "nfs1", "port": 2222, "user": "ops", "key": "/k/id", "common_args": "-o 'ProxyCommand=ssh -W %h:%p bastion'",
         "become": True, "python": "/usr/libexec/platform-python"}
    argv = freeze_mod.capture_argv(c)
    assert argv[:7] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222"]
    assert "ProxyCommand=ssh -W %h:%p bastion" in argv and "ops@nfs1" in argv
    assert argv[-1].startswith("sudo -n /usr/libexec/platform-python -c ")


def test_capture_spec_takes_rendered_strings_and_refuses_bad_ones(freeze_mod):
    # What a task's Jinja gives the module: nested values are strings.
    c = freeze_mod.capture_spec({"host": "nfs1", "become": "False", "entries": None,
                                 "options": {"root": "/srv", "method": "reflink", "timeout": "27", "lock_timeout": "600"}})
    assert c["options"]["timeout"] == 27 and c["options"]["lock_timeout"] == 600
    assert c["become"] is False and c["entries"] == []
    for bad in ({"host": "", "options": {"root": "/srv", "method": "reflink"}},
                {"host": "h", "options": {"root": "/srv", "method": "zfs"}},
                {"host": "h", "options": {"root": "/srv", "method": "reflink", "timeout": "soon"}}):
        with pytest.raises(ValueError):
            freeze_mod.capture_spec(bad)
