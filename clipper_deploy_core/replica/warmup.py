"""A replica answers a first batch through the real model before it links, so a deploy that has returned
answers its first query within the SLO (lazy framework initialisation, first-call costs, caches all happen here).

The batch is the deploy's ``sample_inputs`` when the bundle keeps them (their failure is a load failure: they
passed the deploy's own check), else one made-up input of the input type, whose failure is only logged: a model
may well refuse an input of the wrong width.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ..bundle.manifest import WARMUP_NAME
from ..inputs import validate_input

MADE_UP: dict[str, Any] = {"doubles": [0.0], "floats": [0.0], "integers": [0], "strings": "warm-up", "bytes": ""}


def warm_up(loaded: Any) -> None:
    input_type = loaded.manifest.input_type
    started = time.monotonic()
    samples = loaded.path / WARMUP_NAME
    if samples.is_file():
        wire = json.loads(samples.read_text())
        loaded.predict([validate_input(input_type, x, f"sample input {i}") for i, x in enumerate(wire)])
        what = f"{len(wire)} sample input(s)"
    else:
        try:
            loaded.predict([validate_input(input_type, MADE_UP[input_type])])
            what = "a made-up input"
        except Exception as e:  # noqa: BLE001 - the model may refuse a made-up input; its real inputs still work
            sys.stderr.write(f"replica: warm-up on a made-up {input_type} input failed ({type(e).__name__}: {e}); "
                             f"pass sample_inputs= to deploy to warm it with real ones\n")
            return
    print(f"replica: warmed up on {what} in {time.monotonic() - started:.3f}s", flush=True)
