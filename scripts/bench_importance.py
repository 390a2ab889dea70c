"""Benchmark of the importance extraction (isplit.importance) against three baselines.

For vgg16, resnet50 and mobilenet_v2 (torchvision layouts, RANDOM weights: timing does not
depend on the weights; 10-class head) at 64 px, batch 32, on the same random batches:

  (a) a plain forward + backward: loss = the target logits summed, ``loss.backward()`` with
      parameter gradients, as a training step would (also reported: (a') the same with frozen
      parameters and the gradient taken w.r.t. the input only);
  (b) ``isplit.importance.gradcam.extract`` (one forward + one backward per batch, all layers);
  (c) Captum ``LayerGradCam`` called once per probe layer (one forward + backward per layer),
      parameters frozen, divided by the channel count to match the channel mean;
  (d) the per-image reference of the public code's algorithm as it runs (docs/methods.md §6;
      tools/reference.py with ``public_code_cost=True``: batch 1, one backward per
      image, and the forward prefix re-run with autograd for every hooked module — VGG16's 31
      ``features`` modules, ResNet-50's 20 entries — keeping only the probed layers) on a few
      images, scaled per image.

Each method is warmed up once (on a 4-image slice) before it is timed; (a), (a') and (b) run
in ``--rounds`` alternating rounds and each keeps its fastest. Each model runs in its
own child process, so ``peak_rss_mb`` (ru_maxrss) is that model's peak over all methods;
``peak_rss_mb_ab`` is the peak after (a) and (b) only. torch threads = available cores.

(b) also pays once per run for tracing the model and placing its taps (``setup_s``, timed
apart, 0.07-0.16 s here): ``b/a'`` is the per-batch cost without it, ``..._with_setup`` with it,
which at the --quick size of two batches is a large share.

The LAST line of stdout is one JSON object: ``vs_input_gradient`` (b/a', worst model: the
extraction against one forward + input-gradient backward, the least any gradient method must
do, the setup excluded), ``vs_forward_backward`` (b/a, worst), ``speedup_vs_captum`` (c/b, worst),
``speedup_vs_per_image`` (d/b, worst), per-model numbers and the machine load. Goals: b/a' <=
1.1, c/b >= 5, d/b >= 30. Timings depend on the machine and its load: run it on a quiet one.

    .venv/bin/python -m scripts.bench_importance --quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time

MODELS = ("vgg16", "resnet50", "mobilenet_v2")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _bench_model(name: str, args: dict, queue) -> None:
    import numpy as np
    import torch
    from captum.attr import LayerGradCam

    from isplit.importance import gradcam as importance
    from isplit.importance.taps import resolve_layers, tap_model
    from isplit.nets import models
    from tools.reference import reference_cui

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model = models.build(name, 10).eval()
    points = models.probe_points(model)
    chans = {p.index: p.shape[0] for p in models.describe(model, points, args["size"])}
    gen = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(args["batch"], 3, args["size"], args["size"], generator=gen),
            torch.randint(0, 10, (args["batch"],), generator=gen),
        )
        for _ in range(args["batches"])
    ]
    n_img = sum(len(y) for _, y in batches)
    warm = [(batches[0][0][:4], batches[0][1][:4])]
    out: dict = {"points": len(points), "images": n_img}

    # (a) plain forward + backward with parameter gradients
    def fwd_bwd(data):
        for p in model.parameters():
            p.requires_grad_(True)
        for x, y in data:
            model.zero_grad(set_to_none=True)
            model(x).gather(1, y[:, None]).sum().backward()
        model.zero_grad(set_to_none=True)

    # (a') forward + backward w.r.t. the input only (parameters frozen)
    def fwd_bwd_input(data):
        for p in model.parameters():
            p.requires_grad_(False)
        for x, y in data:
            x = x.clone().requires_grad_(True)
            torch.autograd.grad(model(x).gather(1, y[:, None]).sum(), x)

    def extract(data):
        return importance.extract(model, points, data)

    def timed(fn, data):
        fn(warm)
        t0 = time.perf_counter()
        res = fn(data)
        return time.perf_counter() - t0, res

    # (a), (a') and (b) in alternating rounds, each method's fastest round kept: on a shared
    # machine a burst of load then slows one round of each, not one method
    # (b) pays once per run for tracing the model and placing its taps, whatever the number of
    # images: timed on its own, so the per-image cost can be told from the setup
    probes = resolve_layers(model, points)
    rounds = {"a_s": [], "a_input_s": [], "b_s": [], "setup_s": []}
    for _ in range(args["rounds"]):
        rounds["a_s"].append(timed(fwd_bwd, batches)[0])
        rounds["a_input_s"].append(timed(fwd_bwd_input, batches)[0])
        b_s, frame = timed(extract, batches)
        rounds["b_s"].append(b_s)
        t0 = time.perf_counter()
        tap_model(model, probes, batches[0][0])
        rounds["setup_s"].append(time.perf_counter() - t0)
    out.update({k: min(v) for k, v in rounds.items()})
    out["peak_rss_mb_ab"] = _rss_mb()
    ours = frame.pivot(index="sample", columns="layer_index", values="cui").to_numpy()

    # (c) Captum LayerGradCam, once per layer, on the first `captum_batches` batches
    modules = dict(model.named_modules())
    for p in model.parameters():
        p.requires_grad_(False)
    cap_data = batches[: args["captum_batches"]]

    def captum(data):
        res = []
        for x, y in data:
            cols = []
            for pt in points:
                attr = LayerGradCam(model, modules[pt.name]).attribute(
                    x, target=y, relu_attributions=True, attr_dim_summation=True
                )
                cols.append(attr.mean(dim=(1, 2, 3)).detach().numpy() / chans[pt.index])
            res.append(np.stack(cols, 1))
        return np.concatenate(res)

    c_s, cap = timed(captum, cap_data)
    n_cap = sum(len(y) for _, y in cap_data)
    out["c_s_per_img"] = c_s / n_cap
    scale = np.maximum(np.abs(cap).max(0, keepdims=True), 1e-30)
    out["captum_max_diff_rel_to_layer_max"] = float((np.abs(ours[:n_cap] - cap) / scale).max())

    # (d) per-image reference on a few images (it needs parameters that require grad)
    for p in model.parameters():
        p.requires_grad_(True)
    k = args["ref_images"]
    x0, y0 = batches[0]
    reference_cui(model, points, warm[0][0][:1], warm[0][1][:1], public_code_cost=True)
    t0 = time.perf_counter()
    ref, _ = reference_cui(model, points, x0[:k], y0[:k], public_code_cost=True)
    out["d_s_per_img"] = (time.perf_counter() - t0) / k
    model.eval()
    out["reference_max_diff_rel_to_layer_max"] = float(
        (np.abs(ours[:k] - ref) / np.maximum(np.abs(ref).max(0, keepdims=True), 1e-30)).max()
    )
    out["peak_rss_mb"] = _rss_mb()

    out["a_s_per_img"] = out["a_s"] / n_img
    out["b_s_per_img"] = out["b_s"] / n_img
    out["images_per_s"] = n_img / out["b_s"]
    out["b_over_a"] = out["b_s"] / out["a_s"]
    out["b_over_a_input_grad_with_setup"] = out["b_s"] / out["a_input_s"]
    out["b_over_a_input_grad"] = (out["b_s"] - out["setup_s"]) / out["a_input_s"]
    out["captum_over_b"] = out["c_s_per_img"] / out["b_s_per_img"]
    out["per_image_over_b"] = out["d_s_per_img"] / out["b_s_per_img"]
    queue.put(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches and images (< 5 min)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=None, help="timed batches for (a), (b)")
    ap.add_argument("--captum-batches", type=int, default=None)
    ap.add_argument("--ref-images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of (a), (a'), (b)")
    a = ap.parse_args(argv)
    args = {
        "size": a.size,
        "batch": a.batch,
        "batches": a.batches or (2 if a.quick else 8),
        "captum_batches": a.captum_batches or 1,
        "ref_images": a.ref_images or (3 if a.quick else 8),
        "threads": a.threads,
        "rounds": a.rounds,
    }
    args["captum_batches"] = min(args["captum_batches"], args["batches"])
    args["ref_images"] = min(args["ref_images"], args["batch"])
    load_before = os.getloadavg()
    results = {}
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    for name in a.models:
        q = ctx.Queue()
        proc = ctx.Process(target=_bench_model, args=(name, args, q))
        proc.start()
        res = q.get()
        proc.join()
        results[name] = res
        print(
            f"{name}: {res['points']} probe points, {res['images']} images | "
            f"(a) fwd+bwd {1e3 * res['a_s_per_img']:.1f} ms/img "
            f"[input-grad only {1e3 * res['a_input_s'] / res['images']:.1f}] | "
            f"(b) extract {1e3 * res['b_s_per_img']:.1f} ms/img ({res['images_per_s']:.1f} img/s)"
            f" | (c) captum {1e3 * res['c_s_per_img']:.1f} ms/img | "
            f"(d) per-image {1e3 * res['d_s_per_img']:.1f} ms/img | "
            f"b/a' {res['b_over_a_input_grad']:.2f} (with the {res['setup_s']:.2f} s setup "
            f"{res['b_over_a_input_grad_with_setup']:.2f}), b/a {res['b_over_a']:.2f}, "
            f"c/b {res['captum_over_b']:.1f}, d/b {res['per_image_over_b']:.1f} | "
            f"peak RSS {res['peak_rss_mb']:.0f} MB (after a,b: {res['peak_rss_mb_ab']:.0f}) | "
            f"max diff vs captum {res['captum_max_diff_rel_to_layer_max']:.1e}, "
            f"vs reference {res['reference_max_diff_rel_to_layer_max']:.1e} (of layer max)",
            flush=True,
        )
    summary = {
        "vs_input_gradient": max(r["b_over_a_input_grad"] for r in results.values()),
        "vs_forward_backward": max(r["b_over_a"] for r in results.values()),
        "speedup_vs_captum": min(r["captum_over_b"] for r in results.values()),
        "speedup_vs_per_image": min(r["per_image_over_b"] for r in results.values()),
        "models": {
            n: {
                "images_per_s": round(r["images_per_s"], 2),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "peak_rss_mb_ab": round(r["peak_rss_mb_ab"], 1),
                "b_over_a": round(r["b_over_a"], 3),
                "b_over_a_input_grad": round(r["b_over_a_input_grad"], 3),
                "b_over_a_input_grad_with_setup": round(r["b_over_a_input_grad_with_setup"], 3),
                "setup_s": round(r["setup_s"], 3),
                "captum_over_b": round(r["captum_over_b"], 2),
                "per_image_over_b": round(r["per_image_over_b"], 2),
            }
            for n, r in results.items()
        },
        "settings": {**args, "quick": a.quick, "weights": "random", "device": "cpu"},
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
