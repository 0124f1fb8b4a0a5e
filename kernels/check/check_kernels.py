#!/usr/bin/env python3
"""Compile every kernel in kernels/*.cu with NVIDIA's real compilers and check its budgets.

No GPU and no CUDA toolkit needed: NVRTC (libnvrtc from the PyPI wheel nvidia-cuda-nvrtc-cu12)
turns the CUDA source into PTX for each target architecture with the same options zerohop uses
at run time, and ptxas (from nvidia-cuda-nvcc-cu12) assembles that PTX into SASS with
`-v --warn-on-spills -Werror`, which prints registers, shared/constant memory and stack per
kernel and fails on any spill. The figures are compared with kernels/check/budgets.json.

With --cubin-dir the SASS of every kernel is kept, one cubin per architecture
(DIR/<kernel source stem>.sm_XX.cubin): kernels/build.rs runs this at build time and embeds them.

Usage: check_kernels.py [--report OUT.json] [--ptx-dir DIR] [--cubin-dir DIR]
Exit status: 0 all within budget; 1 a compile error, spill or budget overrun; 3 compilers missing.
"""

import argparse
import ctypes
import glob
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.dirname(HERE)
ARCHS = ["75", "80", "86", "89", "90"]
# The options zerohop's run-time NVRTC path uses (engine/src/cuda/kernels.rs): no FMA contraction,
# so GPU results match the CPU emulation.
NVRTC_OPTIONS = ["--fmad=false", "--std=c++17", "-default-device"]


def find_nvidia(sub):
    """Locate a file inside the `nvidia` namespace package of the wheels."""
    try:
        import nvidia  # noqa: F401  (namespace package from the wheels)
    except ImportError:
        return None
    for root in nvidia.__path__:
        hits = glob.glob(os.path.join(root, sub))
        if hits:
            return sorted(hits)[-1]
    return None


class Nvrtc:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"

    def check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(status).decode()}")

    def compile(self, source, name, arch):
        prog = ctypes.c_void_p()
        self.check(
            self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
            "nvrtcCreateProgram",
        )
        try:
            opts = NVRTC_OPTIONS + [f"--gpu-architecture=compute_{arch}"]
            arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            status = self.lib.nvrtcCompileProgram(prog, len(opts), arr)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, log)
            if status != 0:
                raise RuntimeError(f"NVRTC compute_{arch} failed:\n{log.value.decode(errors='replace')}")
            self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value)
            self.check(self.lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
            return ptx.value.decode(), log.value.decode(errors="replace").strip()
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


RE_FUNC = re.compile(r"Compiling entry function '(\w+)'")
RE_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
RE_USED = re.compile(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?")


def ptxas(ptxas_path, ptx, arch, workdir, cubin=None):
    src = os.path.join(workdir, f"k_{arch}.ptx")
    with open(src, "w") as f:
        f.write(ptx)
    cmd = [ptxas_path, f"-arch=sm_{arch}", "-v", "--warn-on-spills", "-Werror", src, "-o", cubin or os.devnull]
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"ptxas sm_{arch} failed:\n{out}")
    kernels, cur = {}, None
    for line in out.splitlines():
        if m := RE_FUNC.search(line):
            cur = kernels.setdefault(m.group(1), {"registers": 0, "smem": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0})
        elif cur is not None and (m := RE_STACK.search(line)):
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(m.group(i)) for i in (1, 2, 3))
        elif cur is not None and (m := RE_USED.search(line)):
            cur["registers"] = int(m.group(1))
            cur["smem"] = int(m.group(2) or 0)
    return kernels, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", help="write the figures as JSON here")
    ap.add_argument("--ptx-dir", help="also write the PTX per architecture here")
    ap.add_argument("--cubin-dir", help="also write the SASS per architecture here (<stem>.sm_XX.cubin)")
    args = ap.parse_args()

    nvrtc_path = os.environ.get("ZEROHOP_NVRTC") or find_nvidia("cuda_nvrtc/lib/libnvrtc.so.*")
    ptxas_path = os.environ.get("ZEROHOP_PTXAS") or find_nvidia("cuda_nvcc/bin/ptxas")
    if not nvrtc_path or not ptxas_path:
        print("check_kernels: NVRTC or ptxas not found; pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12")
        return 3
    with open(os.path.join(HERE, "budgets.json")) as f:
        budgets = json.load(f)
    nvrtc = Nvrtc(nvrtc_path)
    workdir = args.ptx_dir or os.path.join(os.environ.get("TMPDIR", "/tmp"), "zerohop-kernels")
    os.makedirs(workdir, exist_ok=True)
    if args.cubin_dir:
        os.makedirs(args.cubin_dir, exist_ok=True)
    report, failures = {"nvrtc": nvrtc.version, "archs": ARCHS, "options": NVRTC_OPTIONS, "kernels": {}}, []
    for cu in sorted(glob.glob(os.path.join(KERNELS, "*.cu"))):
        name = os.path.basename(cu)
        with open(cu) as f:
            source = f.read()
        for arch in ARCHS:
            try:
                ptx, log = nvrtc.compile(source, name, arch)
                if log:
                    failures.append(f"{name} compute_{arch}: NVRTC warnings:\n{log}")
                cubin = None
                if args.cubin_dir:
                    cubin = os.path.join(args.cubin_dir, f"{os.path.splitext(name)[0]}.sm_{arch}.cubin")
                figures, _ = ptxas(ptxas_path, ptx, arch, workdir, cubin)
            except RuntimeError as e:
                failures.append(f"{name}: {e}")
                continue
            if not figures:
                failures.append(f"{name} sm_{arch}: ptxas reported no entry function")
            for kernel, fig in figures.items():
                report["kernels"].setdefault(kernel, {})[f"sm_{arch}"] = fig
                budget = budgets.get(kernel)
                if budget is None:
                    failures.append(f"{kernel}: no budget in budgets.json")
                    continue
                for key in ("registers", "smem", "stack", "spill_stores", "spill_loads"):
                    if fig[key] > budget[key]:
                        failures.append(f"{kernel} sm_{arch}: {key} {fig[key]} > budget {budget[key]}")
                print(
                    f"{kernel:<24} sm_{arch}: {fig['registers']:>3} registers, {fig['smem']} B shared, "
                    f"{fig['stack']} B stack, {fig['spill_stores']}/{fig['spill_loads']} B spilled "
                    f"(budget {budget['registers']} registers, {budget['stack']} B stack)"
                )
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    for msg in failures:
        print("FAIL:", msg)
    print(f"check_kernels: NVRTC {nvrtc.version}, {len(report['kernels'])} kernel(s), archs {', '.join(ARCHS)}: "
          + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
