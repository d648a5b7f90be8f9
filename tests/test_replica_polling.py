"""A replica polls its link for a moment after each reply before it sleeps (replica/polling.py): the window grows
while frames come soon after a reply and falls to nothing while they do not, so a replica with sparse traffic or
none sleeps. Real sockets, a real cluster."""

import socket
import threading
import time

import pytest

from clipper_deploy_core.deployers.python import create_endpoint
from clipper_deploy_core.replica.polling import GROW_FROM_S, POLL_ENV, Poller, max_window_s, next_window
from clipper_deploy_core.testing import local_cluster, predict


def test_the_window_grows_while_frames_come_soon_and_falls_to_nothing_while_they_do_not():
    top = 500e-6
    window, seen = 0.0, []
    for _ in range(6):  # frames 100 µs after each reply: a longer poll would have caught each
        window = next_window(window, 100e-6, top)
        seen.append(window)
    assert seen == [GROW_FROM_S, 2 * GROW_FROM_S, 4 * GROW_FROM_S, 8 * GROW_FROM_S, top, top]
    for _ in range(4):  # then a frame only every second: halved each time, then none at all
        window = next_window(window, 1.0, top)
    assert window == 0.0


def test_a_poller_returns_on_a_frame_that_is_there_and_sleeps_for_one_that_is_not():
    a, b = socket.socketpair()
    with a, b:
        poller = Poller(a, max_window=1.0)
        b.sendall(b"x")
        poller.wait()  # there already: no sleep, nothing learned
        assert poller.window == 0.0
        a.recv(1)
        for _ in range(20):  # on a busy machine the frame may be there before wait() looks: then nothing is learned
            late = threading.Timer(0.002, b.sendall, (b"y",))  # comes while the poller sleeps, well within 1 s
            late.start()
            poller.wait()
            late.join()
            assert a.recv(1) == b"y"
            if poller.window:
                break
        assert poller.window == GROW_FROM_S
        b.close()
        poller.wait()  # the frontend hung up: readable too, so the read sees it at once


def test_polling_off_never_waits_for_a_frame(monkeypatch):
    monkeypatch.setenv(POLL_ENV, "0")
    a, b = socket.socketpair()
    with a, b:
        poller = Poller(a)
        assert poller.max_window == 0.0
        poller.wait()  # returns with nothing there: the blocking read does the sleeping
        assert poller.window == 0.0


@pytest.mark.parametrize("raw, expected", [(None, 500e-6), ("120", 120e-6), ("0", 0.0), ("fast", 500e-6),
                                           ("-5", 500e-6), ("inf", 500e-6), ("nan", 500e-6)])
def test_the_poll_window_is_read_in_microseconds_and_a_bad_value_is_named(monkeypatch, capsys, raw, expected):
    if raw is None:
        monkeypatch.delenv(POLL_ENV, raising=False)
    else:
        monkeypatch.setenv(POLL_ENV, raw)
    assert max_window_s() == pytest.approx(expected)
    out = capsys.readouterr().out
    named = f"{POLL_ENV}={raw!r} is not a number of microseconds; using 500" in out
    assert named == (raw in ("fast", "-5", "inf", "nan"))


def test_a_poller_watches_several_links_and_a_removed_one_no_longer_wakes_it():
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        poller = Poller(a, max_window=1.0)
        poller.add(c)
        d.sendall(b"x")  # on the second link
        poller.wait(timeout=10.0)
        assert c.recv(1) == b"x"
        started = time.perf_counter()
        poller.wait(timeout=0.05)  # nothing on either: back at the timeout (the links' select does the reading)
        assert time.perf_counter() - started >= 0.05
        poller.remove(c)
        c.close()  # a closed descriptor still registered would read as ready at once, at every poll
        started = time.perf_counter()
        poller.wait(timeout=0.05)
        assert time.perf_counter() - started >= 0.05


@pytest.mark.parametrize("frontends", [1, 2])
@pytest.mark.parametrize("setting", ["0", "2000", "soon"])
def test_replicas_answer_every_query_with_polling_on_off_or_misconfigured(tmp_path, monkeypatch, setting, frontends):
    monkeypatch.setenv(POLL_ENV, setting)  # the cluster and its replicas inherit it
    # with several frontend processes a replica serves a link to each, and polls them all
    with local_cluster(f"poll{setting}-{frontends}", tmp_path, cache_size=0, frontends=frontends) as conn:
        create_endpoint(conn, "p", "doubles", lambda xs: [str(sum(x)) for x in xs])
        for i in range(50):
            assert predict(conn, "p", {"input": [float(i), 1.0]})["output"] == i + 1.0
        (rep,) = conn.get_all_model_replicas(verbose=True)
        log = open(rep["log"]).read()
    assert (f"{POLL_ENV}='soon' is not a number of microseconds" in log) == (setting == "soon")
