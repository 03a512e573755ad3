"""Learning curves of chapter 8: the domain-knowledge inspector against a CNN trained from scratch.

    nice -n 10 python -m benchmarks.small_data            # writes benchmarks/small_data_results.json
    nice -n 10 python -m benchmarks.small_data --seeds 2 3 --sizes 20 50 100 200 500 \
        --blind-seeds 1 --blind-n 300 --merge                 # adds rows to the recorded file

For each seed, a pool of training frames and a separate test set of frames are simulated
(:func:`mathkit.data.simulate_conveyor`); both models are fitted on the first ``n`` frames of
the pool for every ``n`` in ``SIZES`` and scored on the same test set: error rate (threshold
1/2), cost per item with a missed defect costing ``MISS_COST`` and a false alarm 1 (flag when
the probability of a defect exceeds 1 / (1 + MISS_COST)), Brier score and expected calibration
error (10 equal-width bins). Then one run per seed with discolored items added shows what the
inspector's features cannot see. The JSON is rewritten after every fit, so a partial run keeps
what it measured. One torch thread (the machine is shared). With ``--merge`` the rows are added
to those already in the output file (its ``runs`` list says which run produced what); the
recorded file was made that way, because on the shared machine a CNN fit on 1,000 frames took
about eight minutes.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from mathkit.data import DEFECT_KINDS, simulate_conveyor
from mathkit.inspection import DefectInspector
from mathkit.calibration import binary_report
from mathkit.nn import CNNClassifier

SIZES = (20, 50, 100, 200, 500, 1000)
SEEDS = (1, 2, 3)
N_TEST = 1000
MISS_COST = 5.0
OUT = Path(__file__).with_name("small_data_results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--blind-seeds", type=int, nargs="*", default=SEEDS)
    parser.add_argument("--blind-n", type=int, default=500)
    parser.add_argument("--merge", action="store_true", help="add to the rows already in the output file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    run = dict(date=datetime.now(timezone.utc).isoformat(timespec="minutes"), seeds=args.seeds, sizes=args.sizes,
               blind_seeds=args.blind_seeds, blind_n=args.blind_n,
               machine=f"{platform.machine()}, torch threads 1, shared 2-core host (load ~12)")
    if args.merge and args.out.exists():
        record = json.loads(args.out.read_text())
        record["runs"] = record.get("runs", []) + [run]
    else:
        record = dict(date=run["date"], n_test=N_TEST, miss_cost=MISS_COST, runs=[run], rows=[], blind_spot=[])
    rows = record["rows"]
    for seed in args.seeds:
        pool = simulate_conveyor(max(args.sizes), rng=10 * seed)
        test = simulate_conveyor(N_TEST, rng=10 * seed + 1)
        for n in args.sizes:
            train = pool.subset(slice(0, n))
            for name, model in (("domain", DefectInspector()), ("cnn", CNNClassifier(random_state=seed))):
                t = time.perf_counter()
                model.fit(train.images, train.defective)
                p = model.predict_proba(test.images)[:, 1]
                rows.append(dict(seed=seed, n=n, model=name, seconds=time.perf_counter() - t,
                                 **binary_report(test.defective, p, miss_cost=MISS_COST)))
                print(rows[-1], flush=True)
                args.out.write_text(json.dumps(record, indent=1))
    # the blind spot: discolored items among the defects
    kinds = tuple(DEFECT_KINDS)
    for seed in args.blind_seeds:
        pool = simulate_conveyor(args.blind_n, kinds=kinds, rng=100 * seed)
        test = simulate_conveyor(N_TEST, kinds=kinds, rng=100 * seed + 1)
        for name, model in (("domain", DefectInspector()), ("cnn", CNNClassifier(random_state=seed))):
            p = model.fit(pool.images, pool.defective).predict_proba(test.images)[:, 1]
            flagged = p > 0.5
            record["blind_spot"].append(dict(
                seed=seed, n=args.blind_n, model=name,
                recall={k: float(flagged[test.kind == i].mean()) for i, k in enumerate(kinds)},
                false_alarm=float(flagged[~test.defective].mean())))
            print(record["blind_spot"][-1], flush=True)
            args.out.write_text(json.dumps(record, indent=1))
    run["seconds"] = time.time() - started
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
