"""A replica linked to several frontends runs the batches that wait together as one predict call, and answers each
frontend for its own inputs: with N frontends the model still sees the batch one frontend would have sent. Real
bundles, loaded as a replica loads them, fed the frames the frontends' encoder writes."""

import numpy as np
import orjson

from clipper_deploy_core import wire
from clipper_deploy_core.bundle import load_bundle, save_bundle
from clipper_deploy_core.replica.batches import handle, handle_together


def frame(msg_id, inputs):
    """A batch frame as a frontend encodes it, decoded as the replica reads it off the socket."""
    data = wire.encode_batch(msg_id, inputs)
    (n,) = wire.HEADER.unpack(data[:4])
    head = orjson.loads(data[4:4 + n])
    return head, bytearray(data[4 + n:])


def loaded(tmp_path, input_type, func):
    return load_bundle(save_bundle(tmp_path / "b", name="m", version=1, input_type=input_type, func=func))


def test_batches_from_two_frontends_run_as_one_call_and_each_gets_its_own_answers(tmp_path):
    def predict(batch):  # each answer says how large the call's batch was (the bundle holds a copy of this)
        return [f"{float(row.sum())}/{len(batch)}" for row in batch]

    bundle = loaded(tmp_path, "doubles", predict)
    a = frame(1, [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    b = frame(2, [np.array([10.0, 20.0]), np.array([30.0, 40.0]), np.array([50.0, 60.0])])
    ra, rb = handle_together(bundle, [a, b])
    # one call of all five inputs
    assert (ra["id"], ra["outputs"]) == (1, ["3.0/5", "7.0/5"])
    assert (rb["id"], rb["outputs"]) == (2, ["30.0/5", "70.0/5", "110.0/5"])


def test_invalid_inputs_stay_in_place_and_ragged_and_string_batches_merge(tmp_path):
    def lengths(batch):
        return [str(len(x)) for x in batch]

    ragged = loaded(tmp_path, "doubles", lengths)
    good = frame(1, [np.array([1.0]), wire.RawQuery(b'{"input": [1, 2, 3]}')])
    bad = frame(2, [wire.RawQuery(b'{"input": ["x"]}'), np.array([1.0, 2.0])])
    r1, r2 = handle_together(ragged, [good, bad])
    assert r1["outputs"] == ["1", "3"] and r1["invalid"] == {}
    assert r2["outputs"][0] is None and "0" in r2["invalid"] and r2["outputs"][1] == "2"

    words = loaded(tmp_path / "s", "strings", lambda xs: [x.upper() for x in xs])
    s1, s2 = handle_together(words, [frame(7, ["a", "b"]), frame(8, ["c"])])
    assert (s1["outputs"], s2["outputs"]) == (["A", "B"], ["C"])


def test_a_model_error_fails_every_batch_of_the_call_and_a_single_frame_is_unchanged(tmp_path):
    def picky(batch):
        if len(batch) > 2:
            raise ValueError("too many")
        return [str(len(batch))] * len(batch)

    bundle = loaded(tmp_path, "doubles", picky)
    both = handle_together(bundle, [frame(1, [np.array([1.0]), np.array([2.0])]), frame(2, [np.array([3.0])])])
    assert [r["type"] for r in both] == ["error", "error"]
    assert all("ValueError: too many" in r["message"] for r in both)
    assert handle(bundle, *frame(3, [np.array([1.0])]))["outputs"] == ["1"]
    assert handle(bundle, {"type": "bye", "id": 0}, bytearray()) is None  # a frame that wants no reply


def test_a_frame_of_unparsed_bodies_only_is_cut_without_arrays_and_one_query_is_a_one_row_batch(tmp_path):
    def shapes(batch):
        return [f"{batch.shape[0]}x{batch.shape[1]}:{row.dtype}" for row in batch]

    bundle = loaded(tmp_path, "doubles", shapes)
    (one,) = handle_together(bundle, [frame(1, [wire.RawQuery(b'{"input": [1, 2, 3]}')])])
    assert one["outputs"] == ["1x3:float64"]
    bodies = [wire.RawQuery(b) for b in (b'{"input": [1, 2]}', b'{"input": "no"}', b'{"input": [3, 4]}')]
    (three,) = handle_together(bundle, [frame(2, bodies)])
    assert three["outputs"][0] == three["outputs"][2] == "2x2:float64"
    assert three["outputs"][1] is None and "1" in three["invalid"]


def test_a_replica_waits_for_the_frontend_it_just_answered_so_their_batches_merge(tmp_path, monkeypatch):
    """After a round that answered both links, the replica waits up to a fifth of its last call (capped by
    CLIPPER_DEPLOY_MERGE_WAIT_MS) for the other link's next batch: one that comes 10 ms later joins the call."""
    import socket
    import threading

    from clipper_deploy_core.replica.links import serve_links

    def slow(batch):  # each answer says how large the call's batch was
        import time

        time.sleep(0.5)
        return [str(len(batch))] * len(batch)

    bundle = loaded(tmp_path, "doubles", slow)
    (fa, ra), (fb, rb) = socket.socketpair(), socket.socketpair()

    def send(sock, msg_id):
        sock.sendall(wire.encode_batch(msg_id, [np.array([1.0])]))

    def reply(sock):
        msg, _ = wire.recv_frame(sock)
        return msg["outputs"]

    monkeypatch.setenv("CLIPPER_DEPLOY_MERGE_WAIT_MS", "5000")
    send(fa, 1)  # both waiting before the replica looks: the first round answers both, as one call
    send(fb, 2)
    serving = threading.Thread(target=serve_links, args=(bundle, ra, ["b"], {"b": rb}, None, wire.DEFAULT_MAX_FRAME),
                               daemon=True)
    serving.start()
    assert (reply(fa), reply(fb)) == (["2"], ["2"])
    send(fa, 3)
    # b's next batch is sent 10 ms after a's: the delay is the input under test (a late frontend), within the
    # 100 ms the replica waits; nothing here waits for a result
    threading.Event().wait(0.01)
    send(fb, 4)
    assert (reply(fa), reply(fb)) == (["2"], ["2"])
    fa.close()  # the cluster process hangs up: the replica says bye to b, answers nothing more, and returns
    assert wire.recv_frame(fb)[0]["type"] == "bye"
    fb.close()
    serving.join(timeout=30)
    assert not serving.is_alive()


def test_the_merge_wait_is_read_in_milliseconds_and_a_bad_value_is_named(monkeypatch, capsys):
    from clipper_deploy_core.replica.links import MERGE_WAIT_ENV, merge_wait_s

    monkeypatch.delenv(MERGE_WAIT_ENV, raising=False)
    assert merge_wait_s() == 0.001
    monkeypatch.setenv(MERGE_WAIT_ENV, "2.5")
    assert merge_wait_s() == 0.0025
    monkeypatch.setenv(MERGE_WAIT_ENV, "0")
    assert merge_wait_s() == 0.0
    for bad in ("fast", "-1", "inf"):  # a negative one was taken as 0, and inf as a wait without end
        monkeypatch.setenv(MERGE_WAIT_ENV, bad)
        assert merge_wait_s() == 0.001
        out = capsys.readouterr().out
        assert f"CLIPPER_DEPLOY_MERGE_WAIT_MS={bad!r} is not a number of milliseconds; using 1" in out
