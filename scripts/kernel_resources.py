"""Compile every kernel configuration the dispatcher can choose for sm_90, and report resources.

    python scripts/kernel_resources.py [--write kernels/RESOURCES.md] [--json PATH] [--check] [--jobs N]

Runs without a GPU: triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32)) builds
the cubin on the CPU, and the cuobjdump shipped in Triton's NVIDIA backend reads its
registers, shared memory and local (spill) memory. --check exits 1 if any configuration
spills or needs more shared memory than an H100/H200 block may opt into.

Must run without TRITON_INTERPRET=1 (the interpreter replaces @triton.jit at import).
Pointers are compiled as 16-byte aligned, as PyTorch allocations are at run time, and the
model sizes (H, R, input size) as multiples of 16, which Triton's JIT specialises on at run
time for such sizes (all the usual ones). --unaligned also compiles the variants for other
sizes; those cannot vectorise their weight loads and are listed with their spills (a known
performance gap, not an error: see kernels/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from fastrnn.kernels import config as kconfig

SHARED_LIMIT_BYTES = 227 * 1024  # per block opt-in on sm_90 (228 KB per SM)
REGISTERS_PER_SM = 64 * 1024
DTYPES = ("fp32", "fp16", "bf16")

# Pointer arguments whose element type is fixed, whatever the LSTM's dtype.
_FIXED_POINTERS = {
    "resets_ptr": "*u8", "lengths_ptr": "*i64", "c_state_ptr": "*fp32", "sync_ptr": "*i32",
    "dh_state_ptr": "*fp32", "dc_state_ptr": "*fp32",
}


def _precisions(dtype: str) -> tuple[str, ...]:
    return ("ieee", "tf32") if dtype == "fp32" else ("ieee",)


def all_variants(max_hidden: int = 4096) -> list[dict]:
    """Every (kernel, dtype, constexprs, warps, stages) the dispatcher can launch, deduplicated."""
    variants: dict[str, dict] = {}

    def add(kernel, dtype, constexprs, num_warps, num_stages, example):
        key = json.dumps([kernel, dtype, constexprs, num_warps, num_stages], sort_keys=True)
        variants.setdefault(key, dict(kernel=kernel, dtype=dtype, constexprs=constexprs,
                                      num_warps=num_warps, num_stages=num_stages, example=example))

    for dtype in DTYPES:
        for grid_sync in (True, False):
            for hidden, out in kconfig.sequence_shapes(max_hidden):
                has_proj = out < hidden
                for kernel, rule in (("sequence_forward", kconfig.forward_config),
                                     ("sequence_backward", kconfig.backward_config)):
                    cfg = rule(hidden, out, dtype, grid_sync)
                    for precision in _precisions(dtype):
                        constexprs = dict(HAS_PROJ=has_proj, RESIDENT=cfg.resident, PRECISION=precision,
                                          BLOCK_B=cfg.block_b, BLOCK_H=cfg.block_h, BLOCK_K=cfg.block_k,
                                          BLOCK_KP=cfg.block_kp)
                        if kernel == "sequence_forward":
                            constexprs["CARRY_H"] = cfg.carry_h
                        add(kernel, dtype, constexprs, cfg.num_warps, cfg.num_stages,
                            f"H={hidden} R={out} grid_sync={grid_sync}")
        step = kconfig.step_config(dtype)
        for precision in _precisions(dtype):
            # The launcher passes HAS_BIAS=False with a precomputed xproj (biases unused).
            for fused, bias in ((True, True), (True, False), (False, False)):
                add("step", dtype, dict(FUSED_INPUT=fused, HAS_BIAS=bias, PRECISION=precision, BLOCK_B=step.block_b,
                                        BLOCK_H=step.block_h, BLOCK_K=step.block_k),
                    step.num_warps, step.num_stages,
                    f"any H, {'x W_ih^T' if fused else 'xproj'}{', bias' if bias else ''}")
            proj = kconfig.projection_config(dtype)
            add("projection", dtype, dict(PRECISION=precision, BLOCK_B=proj.block_b, BLOCK_N=proj.block_h,
                                          BLOCK_K=proj.block_k), proj.num_warps, proj.num_stages, "any H")
    return list(variants.values())


def _kernel_function(name: str):
    if name == "sequence_forward":
        from fastrnn.kernels.sequence_forward import lstm_sequence_forward_kernel as fn
    elif name == "sequence_backward":
        from fastrnn.kernels.sequence_backward import lstm_sequence_backward_kernel as fn
    elif name == "step":
        from fastrnn.kernels.step import lstm_step_kernel as fn
    else:
        from fastrnn.kernels.projection import projection_kernel as fn
    return fn


def _cuobjdump() -> str:
    import triton
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")


_MODEL_SIZES = ("hidden_size", "out_size", "input_size", "in_size")


def compile_variant(variant: dict) -> dict:
    """Compile one variant for sm_90; returns it with registers, shared and local bytes added."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernel_function(variant["kernel"])
    constexprs = dict(variant["constexprs"])
    if variant["kernel"] == "step" and not constexprs["HAS_BIAS"]:
        constexprs.update(b_ih_ptr=None, b_hh_ptr=None)  # the launcher passes None: never read
    signature, attrs = {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = _FIXED_POINTERS.get(name, "*" + variant["dtype"])
            attrs[(index,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if variant.get("aligned", True) and name in _MODEL_SIZES:
                attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn, signature, constexprs, attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                              options=dict(num_warps=variant["num_warps"], num_stages=variant["num_stages"]))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        dump = subprocess.run([_cuobjdump(), "--dump-resource-usage", cubin.name],
                              capture_output=True, text=True, check=True).stdout
    usage = dict(re.findall(r"\b(REG|SHARED|LOCAL|STACK):(\d+)", dump))
    threads = 32 * variant["num_warps"]
    result = dict(variant)
    result.update(
        registers=int(usage["REG"]), static_shared=int(usage["SHARED"]),
        # Triton's shared memory is dynamic: the launch size is in the metadata, not the cubin.
        shared=max(int(usage["SHARED"]), int(compiled.metadata.shared)),
        local=int(usage["LOCAL"]), stack=int(usage["STACK"]),
        ctas_per_sm_by_registers=REGISTERS_PER_SM // (int(usage["REG"]) * threads),
    )
    return result


def problems(result: dict) -> list[str]:
    found = []
    if (result["local"] or result["stack"]) and result.get("aligned", True):
        found.append(f"spills: local {result['local']} B, stack {result['stack']} B")
    if result["shared"] > SHARED_LIMIT_BYTES:
        found.append(f"shared memory {result['shared']} B > {SHARED_LIMIT_BYTES} B")
    if result["ctas_per_sm_by_registers"] < 1:
        found.append("registers exceed one SM")
    return found


def markdown(results: list[dict]) -> str:
    import triton
    lines = [
        "# Kernel resources on sm_90 (H100/H200)",
        "",
        f"Generated by `python scripts/kernel_resources.py --write kernels/RESOURCES.md` (Triton {triton.__version__}),",
        "compiled ahead of time on the CPU: every configuration the dispatcher can choose",
        "(kernels/config.py), pointers 16-byte aligned. Registers are per thread; shared memory",
        f"per CTA (limit {SHARED_LIMIT_BYTES // 1024} KB opt-in per block); spill = local + stack bytes per thread.",
        "",
        "| kernel | dtype | precision | proj | resident | sizes % 16 | BLOCK_B | BLOCK_H | BLOCK_K | BLOCK_KP | warps | stages | registers | shared (B) | spill (B) | example shape |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        c = r["constexprs"]
        lines.append(
            f"| {r['kernel']} | {r['dtype']} | {c.get('PRECISION')} | {c.get('HAS_PROJ', '-')} | "
            f"{c.get('RESIDENT', '-')} | {'yes' if r.get('aligned', True) else 'no'} | {c['BLOCK_B']} | {c.get('BLOCK_H', c.get('BLOCK_N'))} | {c['BLOCK_K']} | "
            f"{c.get('BLOCK_KP', '-') if c.get('HAS_PROJ') else '-'} | {r['num_warps']} | {r['num_stages']} | {r['registers']} | {r['shared']} | {r['local'] + r['stack']} | {r['example']} |"
        )
    return "\n".join(lines) + "\n"


def _sort_key(r: dict):
    c = r["constexprs"]
    return (not r.get("aligned", True), r["kernel"], r["dtype"], str(c.get("PRECISION")), str(c.get("HAS_PROJ")), str(c.get("RESIDENT")),
            c.get("BLOCK_H", 0), c["BLOCK_K"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/kernel_resources.py", description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--check", action="store_true", help="exit 1 on any spill or shared-memory overflow")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--kernel", action="append", help="only these kernels (repeatable)")
    parser.add_argument("--unaligned", action="store_true", help="also sizes that are not multiples of 16")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 replaces the kernels with interpreted functions: unset it", file=sys.stderr)
        return 2
    variants = [v for v in all_variants() if not args.kernel or v["kernel"] in args.kernel]
    if args.unaligned:
        variants += [dict(v, aligned=False) for v in variants]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = sorted(pool.map(compile_variant, variants), key=_sort_key)
    failures = [(r, p) for r in results for p in problems(r)]
    if args.write:
        args.write.write_text(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"{len(results)} configurations compiled for sm_90")
    for r, p in failures:
        print(f"PROBLEM {r['kernel']} {r['dtype']} {r['constexprs']}: {p}")
    if not args.write:
        print(markdown(results))
    return 1 if (args.check and failures) else 0


if __name__ == "__main__":
    sys.exit(main())
