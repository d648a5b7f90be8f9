"""Local replicas are forked from a warm template per interpreter and framework set: scale-up and restarts skip the
interpreter start and the framework import. Checked on real processes: who their parent is, what they answer, and
what happens when a replica or the template itself is killed."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clipper_deploy_core import ClipperConnection, ClipperException, LocalContainerManager
from clipper_deploy_core.cluster.replica_templates import TemplatePool
from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.testing import local_cluster, predict, wait_until


def parent_of(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:  # gone since it was listed
        return None


def cmdline(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def ready(conn, name):
    return [r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == name and r["status"] == "ready"]


def test_replicas_fork_from_one_template_and_survive_its_death(tmp_path):
    with local_cluster("templates", tmp_path) as conn:
        create_endpoint(conn, "forked", "doubles", lambda xs: [str(sum(x)) for x in xs], num_replicas=2)
        pids = [r["pid"] for r in ready(conn, "forked")]
        (template,) = {parent_of(p) for p in pids}  # both from the same template, not the cluster process
        assert "clipper_deploy_core.replica.template" in cmdline(template)
        assert parent_of(template) == conn.cm.info["pid"]
        # a scale-up forks from it too
        conn.set_num_replicas("forked", 3)
        assert {parent_of(r["pid"]) for r in ready(conn, "forked")} == {template}
        # kill -9 one replica: the template reports its exit, the supervisor restarts it from the template
        os.kill(pids[0], signal.SIGKILL)

        def restarted():
            now = ready(conn, "forked")
            return (len(now) == 3 and pids[0] not in [r["pid"] for r in now]
                    and sum(r["restarts"] for r in now) == 1)

        wait_until(restarted, "the killed replica to be restarted, and counted")
        assert {parent_of(r["pid"]) for r in ready(conn, "forked")} == {template}
        # kill -9 the template: its replicas are stopped (nobody could report their exits) and come back from a new one
        os.kill(template, signal.SIGKILL)

        def from_a_new_template():
            parents = {parent_of(r["pid"]) for r in ready(conn, "forked")}
            return len(ready(conn, "forked")) == 3 and len(parents) == 1 and not parents & {template, 1, None}

        wait_until(from_a_new_template, "the replicas to come back from a new template")
        (again,) = {parent_of(r["pid"]) for r in ready(conn, "forked")}
        assert again != template and "clipper_deploy_core.replica.template" in cmdline(again)
        assert predict(conn, "forked", {"input": [1.0, 2.5]})["output"] == 3.5


def test_with_templates_off_every_replica_is_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_DEPLOY_REPLICA_TEMPLATES", "0")
    with local_cluster("fresh", tmp_path) as conn:
        create_endpoint(conn, "fresh", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = ready(conn, "fresh")
        assert parent_of(rep["pid"]) == conn.cm.info["pid"]
        assert "clipper_deploy_core.replica" in cmdline(rep["pid"])


def test_a_template_that_cannot_start_is_not_used(tmp_path):
    """A framework that fails to import ends the template before it is ready: the runner then starts the replica
    as a fresh process (which fails with its own traceback)."""
    broken = tmp_path / "broken-python"
    broken.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'raise ImportError(\"no framework here\")'\n")
    broken.chmod(0o755)

    async def attempt():
        pool = TemplatePool(tmp_path, tmp_path / "logs")
        try:
            return await pool.get(str(broken), ("some-framework",))
        finally:
            await pool.close()

    assert asyncio.run(attempt()) is None
    assert "ImportError: no framework here" in (tmp_path / "logs" / "template.log").read_text()


def test_a_framework_template_forked_from_the_bare_one_that_cannot_import_is_not_used(tmp_path):
    async def attempt():
        pool = TemplatePool(tmp_path, tmp_path / "logs")
        try:
            assert await pool.get(sys.executable, ()) is not None
            return await pool.get(sys.executable, ("no_such_framework_here",))
        finally:
            await pool.close()

    assert asyncio.run(attempt()) is None
    assert "No module named 'no_such_framework_here'" in (tmp_path / "logs" / "template.log").read_text()


def test_a_framework_template_outlives_the_bare_one_it_was_forked_from(tmp_path):
    """The framework's template is the bare template's child, with a channel of its own to the cluster: killing
    the bare template restarts only the closures' replicas, and a killed framework template is forked again from
    the new bare one, its replicas restarted from it."""
    import toy_models

    from clipper_deploy_core import deploy

    with local_cluster("nested", tmp_path, preload=[]) as conn:  # the deploy asks for the toy template
        deploy(conn, toy_models.Polynomial([1.0, 2.0]), lambda m, xs: [str(m(x[0])) for x in xs], name="poly")
        create_endpoint(conn, "closure", "doubles", lambda xs: [str(len(x)) for x in xs])
        templates = templates_of(conn.cm.dir)
        bare, toy = templates[()], templates[("toy_models",)]
        assert parent_of(toy) == bare and parent_of(bare) == conn.cm.info["pid"]
        (poly,), (closure,) = ready(conn, "poly"), ready(conn, "closure")
        assert parent_of(poly["pid"]) == toy

        os.kill(bare, signal.SIGKILL)
        wait_until(lambda: [r["pid"] for r in ready(conn, "closure")] not in ([], [closure["pid"]]),
                   "the closure's replica to come back from a new bare template")
        (again,) = ready(conn, "closure")
        new_bare = parent_of(again["pid"])
        assert new_bare != bare and templates_of(conn.cm.dir)[()] == new_bare
        assert [r["pid"] for r in ready(conn, "poly")] == [poly["pid"]] and running_template(toy)
        assert predict(conn, "poly", {"input": [2.0]})["output"] == 5.0

        os.kill(toy, signal.SIGKILL)
        wait_until(lambda: [r["pid"] for r in ready(conn, "poly")] not in ([], [poly["pid"]]),
                   "the toy model's replica to come back from a new toy template")
        (restarted,) = ready(conn, "poly")
        assert parent_of(restarted["pid"]) == templates_of(conn.cm.dir)[("toy_models",)] != toy
        assert parent_of(parent_of(restarted["pid"])) == new_bare
        assert predict(conn, "poly", {"input": [2.0]})["output"] == 5.0


def socket_inodes(pid):
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def unix_inodes():
    return {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}


def test_a_local_replica_links_over_a_unix_socket_or_tcp_when_the_path_is_too_long(tmp_path, monkeypatch):
    short = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))  # pytest's tmp_path may itself be too deep
    with local_cluster("uds", short) as conn:
        create_endpoint(conn, "uds", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = ready(conn, "uds")
        assert socket_inodes(rep["pid"]) & unix_inodes(), "the replica's link is not a Unix socket"
        rpc_sock = Path(conn.cm.dir) / "rpc.sock"
        assert conn.cm.info["rpc_socket"] == str(rpc_sock)
        assert rpc_sock.is_socket() and rpc_sock.stat().st_mode & 0o077 == 0  # this user only
        assert predict(conn, "uds", {"input": [1.0, 2.0]})["output"] == 2
    assert not rpc_sock.exists()  # removed with the cluster
    # sockaddr_un holds 107 bytes: a deep home puts the socket in a private directory under the temp directory
    deep = tmp_path / ("d" * 100)
    with local_cluster("deep", deep) as conn:
        create_endpoint(conn, "deep", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = ready(conn, "deep")
        assert socket_inodes(rep["pid"]) & unix_inodes()
        rpc_sock = Path(conn.cm.info["rpc_socket"])
        assert rpc_sock.parent.parent == Path(tempfile.gettempdir()) and rpc_sock.is_socket()
        assert rpc_sock.parent.stat().st_mode & 0o777 == 0o700
        assert predict(conn, "deep", {"input": [1.0, 2.0]})["output"] == 2
    assert not rpc_sock.parent.exists()  # removed with the cluster
    # ... and where that is too deep as well, replicas link over TCP
    monkeypatch.setenv("TMPDIR", str(deep))
    with local_cluster("tcp", deep) as conn:
        create_endpoint(conn, "tcp", "doubles", lambda xs: [str(len(x)) for x in xs])
        (rep,) = ready(conn, "tcp")
        assert not socket_inodes(rep["pid"]) & unix_inodes()
        assert "rpc_socket" not in conn.cm.info
        assert predict(conn, "tcp", {"input": [1.0, 2.0]})["output"] == 2
    shutil.rmtree(short, ignore_errors=True)


def test_the_template_preloads_what_the_bundles_plugin_declared(tmp_path):
    """The toy plugin's save_model declares ``preload: ["toy_models"]``: its replicas fork from a template that
    imported it, and a closure's replicas from another one that did not."""
    import toy_models

    from clipper_deploy_core import deploy

    with local_cluster("preload", tmp_path) as conn:
        deploy(conn, toy_models.Polynomial([1.0, 2.0]), lambda m, xs: [str(m(x[0])) for x in xs],
               name="poly")
        create_endpoint(conn, "closure", "doubles", lambda xs: [str(len(x)) for x in xs])
        (poly,), (closure,) = ready(conn, "poly"), ready(conn, "closure")
        templates = templates_of(conn.cm.dir)
        assert parent_of(poly["pid"]) == templates[("toy_models",)]
        assert parent_of(closure["pid"]) == templates[()]
        assert predict(conn, "poly", {"input": [2.0]})["output"] == 5.0


def test_a_forked_replica_collects_garbage_and_leaves_the_templates_objects_frozen(tmp_path):
    """The template runs without collections and freezes its objects before each fork (so a replica's collections
    never write to the pages it shares); the replica itself collects as usual."""
    def gc_state(xs):
        import gc

        return [f"{gc.isenabled()}:{gc.get_freeze_count() > 0}" for _ in xs]

    with local_cluster("gc", tmp_path) as conn:
        create_endpoint(conn, "gc", "doubles", gc_state)
        assert predict(conn, "gc", {"input": [1.0]})["output"] == "True:True"


READY_LINE = re.compile(r"replica template (\d+) \(parent (\d+)\) ready, preloaded \[(.*)\] in ")


def templates_of(cluster_dir):
    """The cluster's running templates, by the modules they preload: each says so in template.log once ready (a
    template forked from another has that one's command line, so only its log line tells them apart)."""
    found = {}
    for line in (Path(cluster_dir) / "logs" / "template.log").read_text().splitlines():
        match = READY_LINE.match(line)
        if match and running_template(int(match[1])):
            found[tuple(m for m in match[3].split(", ") if m)] = int(match[1])
    return found


def running_template(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and "clipper_deploy_core.replica.template" in cmdline(pid)
    except OSError:
        return False


def templates_are(cluster_dir, expected):
    """Wait until the running templates are ``expected`` (module tuples); return them by module tuple."""
    try:
        wait_until(lambda: set(templates_of(cluster_dir)) == set(expected), f"the templates {sorted(expected)}")
    except AssertionError as e:  # say what ran instead, and what the templates wrote
        log = (Path(cluster_dir) / "logs" / "template.log").read_text(errors="replace")
        raise AssertionError(f"{e}; running: {templates_of(cluster_dir)}; template.log ends:\n{log[-3000:]}") from None
    return templates_of(cluster_dir)


def test_templates_start_with_the_cluster_and_the_first_deploy_forks_from_them(tmp_path):
    """The bare template starts before the cluster process's own imports, and the ``preload`` one is forked from it
    as the cluster starts, so the first deploy forks a replica that needs no import: not numpy (which numeric inputs
    need), not the plugins' entry points, not the preloaded framework."""
    import toy_models

    from clipper_deploy_core import deploy

    cm = LocalContainerManager("early", 0, 0, 0, home=tmp_path, preload=["toy_models"])
    conn = ClipperConnection(cm)
    conn.start_clipper()
    try:
        templates = templates_are(cm.dir, {(), ("toy_models",)})
        assert parent_of(templates[()]) == cm.info["pid"]
        assert parent_of(templates[("toy_models",)]) == templates[()]  # forked from it as the cluster starts
        for pid in templates.values():  # numpy is imported in the template already
            wait_until(lambda pid=pid: "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text(),
                       what="the template to import numpy")
        create_endpoint(conn, "bare", "doubles", lambda xs: [str(len(x)) for x in xs])
        deploy(conn, toy_models.Polynomial([1.0, 2.0]), lambda m, xs: [str(m(x[0])) for x in xs], name="poly")
        (bare,), (poly,) = ready(conn, "bare"), ready(conn, "poly")
        assert parent_of(bare["pid"]) == templates[()]
        assert parent_of(poly["pid"]) == templates[("toy_models",)]
        assert predict(conn, "poly", {"input": [2.0]})["output"] == 5.0
    finally:
        conn.stop_all()


def test_preload_takes_module_names_only(tmp_path):
    for bad in ("torch", ["torch; rm -rf /"], ["-m"], [3]):
        with pytest.raises(ClipperException, match="preload must be a list of module names"):
            LocalContainerManager("bad", home=tmp_path, preload=bad)


AUTO_PRELOAD_SCRIPT = '''
import json, sys
early = sys.argv[3] == "early"
if early:
    import toy_models
from clipper_deploy_core import ClipperConnection, LocalContainerManager, deploy
preload = None if sys.argv[2] == "auto" else []
cm = LocalContainerManager("auto", 0, 0, 0, home=sys.argv[1], preload=preload)
conn = ClipperConnection(cm)
conn.start_clipper()
try:
    print(json.dumps({"cluster": cm.info["pid"], "dir": str(cm.dir)}), flush=True)
    sys.stdin.readline()  # the test lists the templates before the import
    import toy_models
    print(json.dumps({"imported": True}), flush=True)
    sys.stdin.readline()  # and again before the deploy
    deploy(conn, toy_models.Polynomial([1.0, 2.0]), lambda m, xs: [str(m(x[0])) for x in xs], name="poly")
    print(json.dumps({"replicas": conn.get_all_model_replicas(verbose=True)}), flush=True)
    sys.stdin.readline()
finally:
    conn.stop_all()
'''


def run_script(tmp_path, preload, when):
    """The user's script, in a process of its own (so what it has imported is known): it starts a cluster, imports
    the toy framework (before that, with ``when="early"``), then deploys a toy model. Yields what it prints, one
    step per ``next``; the script waits for the test between steps."""
    script = tmp_path / "user_script.py"
    script.write_text(AUTO_PRELOAD_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "home"), preload, when],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cluster = None
    try:
        for _ in range(3):
            line = proc.stdout.readline()
            assert line, f"the script exited with {proc.wait()}"
            step = json.loads(line)
            cluster = step.get("cluster", cluster)
            yield step
            proc.stdin.write("\n")
            proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        try:
            if cluster is not None and "clipper_deploy_core.cluster" in cmdline(cluster):
                os.kill(cluster, signal.SIGTERM)  # the script was killed before its stop_all: its cluster stays
        except OSError:
            pass  # stopped by the script


def template_processes(cluster_pid):
    """Every process under the cluster that runs a template's command line: before a deploy, the templates, ready
    or not (a replica forked later runs it too)."""
    found, parents = set(), {cluster_pid}
    while parents:
        children = {int(p.name) for p in Path("/proc").iterdir()
                    if p.name.isdigit() and parent_of(int(p.name)) in parents}
        for pid in children:
            try:
                if "clipper_deploy_core.replica.template" in cmdline(pid):
                    found.add(pid)
            except OSError:
                pass  # ended meanwhile
        parents = children
    return found


@pytest.mark.parametrize("when", ["late", "early"])
def test_by_default_the_first_import_of_a_preload_module_warms_its_template(tmp_path, when):
    """With the default ``preload``, the toy framework's template starts when the script first imports
    ``toy_models`` (declared by the toy plugin's ``preload_modules``), not before; imported before
    ``start_clipper``, it starts with the cluster. Either way it is forked from the bare template, so it imports
    only the framework, and the deploy forks from that same template."""
    steps = run_script(tmp_path, "auto", when)
    first = next(steps)
    cluster, home = first["cluster"], first["dir"]
    if when == "early":
        templates_are(home, {(), ("toy_models",)})
    else:
        templates_are(home, {()})
        assert len(template_processes(cluster)) == 1  # none other is starting either
    next(steps)
    templates = templates_are(home, {(), ("toy_models",)})  # asked for by the import, before any deploy
    assert parent_of(templates[("toy_models",)]) == templates[()]
    (poly,) = next(steps)["replicas"]
    assert poly["status"] == "ready" and parent_of(poly["pid"]) == templates[("toy_models",)]
    for _ in steps:
        pass


def test_preload_empty_warms_nothing_before_the_first_deploy(tmp_path):
    steps = run_script(tmp_path, "off", "late")
    first = next(steps)
    cluster, home = first["cluster"], first["dir"]
    next(steps)
    templates_are(home, {()})
    assert len(template_processes(cluster)) == 1
    (poly,) = next(steps)["replicas"]
    templates = templates_of(home)  # started by the deploy instead, forked from the bare one
    assert parent_of(poly["pid"]) == templates[("toy_models",)]
    assert parent_of(templates[("toy_models",)]) == templates[()]
    for _ in steps:
        pass


def test_warm_replica_template_checks_its_modules_and_caps_the_templates(tmp_path):
    """The admin call behind the automatic preload: module names only, at least one, behind the admin token, and
    at most MAX_TEMPLATES live templates (each holds its frameworks' memory)."""
    from clipper_deploy_core.cluster.replica_templates import MAX_TEMPLATES
    from clipper_deploy_core.http_client import request

    with local_cluster("warm", tmp_path) as conn:
        addr, token = conn.cm.get_admin_addr(), {"X-Clipper-Admin-Token": conn.cm.admin_token}

        def warm(modules, headers=token):
            status, text = request("POST", f"http://{addr}/admin/warm_replica_template", {"modules": modules},
                                   30, headers)
            return status, json.loads(text) if text.startswith("{") else text

        status, body = warm(["os; rm -rf /"])
        assert status == 400 and "modules must be a list of module names" in body["cause"]
        status, body = warm([])
        assert status == 400 and "at least one module" in body["cause"]
        assert warm(["decimal"], headers={})[0] in (401, 403)
        stdlib = ["decimal", "fractions", "csv", "uuid", "heapq", "bisect", "textwrap", "difflib", "statistics"]
        started = {()} | ({("toy_models",)} if "toy_models" in sys.modules else set())  # imported here: warmed
        running = len(templates_are(conn.cm.dir, started))
        for module in stdlib[: MAX_TEMPLATES - running]:
            assert warm([module])[0] == 200
        assert warm(["decimal"])[0] == 200  # already running: not another one
        status, body = warm([stdlib[MAX_TEMPLATES - running]])
        assert status == 400 and f"already runs {MAX_TEMPLATES} replica templates" in body["cause"]
        assert len(templates_are(conn.cm.dir, started | {(m,) for m in stdlib[: MAX_TEMPLATES - running]})) \
            == MAX_TEMPLATES


def test_concurrent_warm_requests_cannot_pass_the_template_cap_together(tmp_path):
    """The cap is checked under the pool's lock: requests that arrive together see each other's templates."""
    from clipper_deploy_core.cluster.replica_templates import MAX_TEMPLATES

    stdlib = ["decimal", "fractions", "csv", "uuid", "heapq", "bisect", "textwrap", "difflib", "statistics", "json"]

    async def warm_all():
        pool = TemplatePool(tmp_path, tmp_path / "logs")
        try:
            results = await asyncio.gather(*(pool.warm(sys.executable, (m,)) for m in stdlib),
                                           return_exceptions=True)
            return results, sum(not t.reader.done() for t in pool.templates.values())
        finally:
            await pool.close()

    results, live = asyncio.run(warm_all())
    refused = [r for r in results if isinstance(r, ClipperException)]
    assert live == MAX_TEMPLATES and len(refused) == len(stdlib) - MAX_TEMPLATES
    assert all(f"already runs {MAX_TEMPLATES} replica templates" in str(r) for r in refused)


def test_a_replica_whose_exit_arrives_with_its_pid_is_still_handed_over_with_its_exit_code():
    """A replica that exits at once (before printing anything) can have its pid and its exit reported in one read
    of the template's answers, before the fork request resumes. A scripted template channel (socketpair and
    StreamReader) makes that order certain; a real one only makes it likely (a CI run got KeyError: <pid>)."""
    import socket

    from clipper_deploy_core.cluster.replica_templates import Channel, Template

    class Process:  # the scripted template's process: nothing to kill or reap
        pid = 0

        def kill(self):
            pass

        async def reap(self):
            pass

    async def scenario():
        ours, theirs = socket.socketpair()
        answers = asyncio.StreamReader()
        answers.feed_data(b'{"ready": true}\n')

        async def spawn():
            return Channel(Process(), ours, answers)

        template = Template(spawn())
        assert await template.ready

        async def answer_request():  # the template forks, and the replica has exited before anyone looks
            await asyncio.to_thread(theirs.recv, 4096)
            answers.feed_data(b'{"pid": 4242}\n{"exited": 4242, "code": 3}\n')

        replying = asyncio.create_task(answer_request())
        child = await template.fork({}, Path("/dev/null"), Path("."))
        await replying
        code = await asyncio.wait_for(child.wait(), 5)
        ours.close()
        theirs.close()
        return child.pid, code

    assert asyncio.run(scenario()) == (4242, 3)


def test_a_template_whose_cluster_is_gone_before_it_is_ready_exits_quietly():
    from clipper_deploy_core.process_commands import template_command

    # stdout is the cluster's end: closed here before the template says it is ready, as when its cluster exits
    proc = subprocess.Popen(template_command(sys.executable, ()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"the cluster closed its pipe; exiting" in err and b"Traceback" not in err, err.decode()
