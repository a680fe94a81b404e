"""Build the compiled core with its CUDA back-ends running on the CPU (see README.md here).

python tests/cuda_emulation/build.py [--sanitize]   # prints the built module's path

The .cu files are compiled as C++ against include/, after two mechanical rewrites that keep
every line where it was (so compiler messages point at the original lines): a launch
``kernel<<<grid, threads, shared, stream>>>(args)`` becomes
``::emu::launch(kernel, grid, threads, shared, stream)(args)``, and ``extern __shared__ T
name[];`` becomes a pointer to the emulated block's shared memory. The result is an extension
module named ``_C`` like the real one, in its own folder, relinked only when a source changes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CSRC = ROOT / "csrc"
CPU_SOURCES = ["bindings.cpp", *(str(p.relative_to(CSRC)) for p in CSRC.glob("*/*_cpu.cpp"))]
CUDA_SOURCES = sorted(str(p.relative_to(CSRC)) for p in CSRC.glob("*/*_cuda.cu"))

_LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<(.*?)>>>\(")
_DYNAMIC_SHARED = re.compile(r"extern __shared__ (\w+) (\w+)\[\];")
SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]


def translate(source: str, name: str) -> str:
    """The C++ the emulation compiles for one .cu file; raises on a construct it cannot map."""
    text = _LAUNCH.sub(r"::emu::launch(\1, \2)(", source)
    text = _DYNAMIC_SHARED.sub(r"\1* \2 = ::emu::dynamic_shared<\1>();", text)
    for marker in ("<<<", "__shared__"):
        if marker in text:
            line = text[: text.index(marker)].count("\n") + 1
            raise ValueError(f"{name}:{line}: the CUDA emulation cannot translate this {marker!r}")
    return f'#line 1 "{CSRC / name}"\n{text}'


def _pybind11_include() -> str:
    try:
        import pybind11
    except ImportError as err:
        raise RuntimeError(
            "the CUDA emulation build needs pybind11's headers: pip install pybind11"
        ) from err
    return pybind11.get_include()


def build(
    sanitize: bool = False,
    out_dir: Path | None = None,
    edit: Callable[[str, str], str] | None = None,
) -> Path:
    """Compile (if needed) and return the path of the emulated ``_C`` extension module.

    ``edit(name, source)`` may rewrite a .cu file's source first (the tests' deliberate bugs);
    such a build needs its own ``out_dir``. Objects are cached by content in the default
    folder's ``obj/``, so an edited build recompiles only the files it changed."""
    default_dir = ROOT / "build" / ("cuda_emulation_asan" if sanitize else "cuda_emulation")
    out_dir = out_dir or default_dir
    flags = [
        "-std=c++17",
        "-O1" if sanitize else "-O2",
        "-g",
        "-fPIC",
        "-fopenmp",
        "-Wall",
        "-Wextra",
        "-Wno-unknown-pragmas",  # #pragma unroll
        "-DEMOHRNET_WITH_CUDA",
        '-DEMOHRNET_CUDA_ARCHITECTURES="emulated"',
        f"-I{HERE / 'include'}",
        f"-I{CSRC}",
        f"-I{_pybind11_include()}",
        f"-I{sysconfig.get_paths()['include']}",
        *(SANITIZE_FLAGS if sanitize else []),
    ]
    headers = hashlib.sha256(" ".join(flags).encode())
    for path in sorted([*CSRC.rglob("*.h"), *(HERE / "include").iterdir()]):
        headers.update(path.read_bytes())

    units = {name: (CSRC / name).read_text() for name in CPU_SOURCES}
    for name in CUDA_SOURCES:
        source = (CSRC / name).read_text()
        units[name] = translate(edit(name, source) if edit else source, name)

    obj_dir = default_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CXX", "g++")

    def compile_one(name: str) -> Path:
        digest = headers.copy()
        digest.update(units[name].encode())
        obj = obj_dir / f"{Path(name).stem}-{digest.hexdigest()[:16]}.o"
        if obj.exists():
            return obj
        translated = name in CUDA_SOURCES
        unit = obj.with_suffix(f".{os.getpid()}.cpp") if translated else CSRC / name
        if translated:
            unit.write_text(units[name])
        tmp = obj.with_suffix(f".{os.getpid()}.o")
        subprocess.run([compiler, *flags, "-c", str(unit), "-o", str(tmp)], check=True)
        tmp.replace(obj)  # atomic: a concurrent build never links half an object
        if translated:
            unit.unlink()
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = list(pool.map(compile_one, units))
    module = out_dir / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))
    stamp = out_dir / "objects.txt"
    listing = "\n".join(map(str, objects))
    if module.exists() and stamp.exists() and stamp.read_text() == listing:
        return module
    link = [compiler, "-shared", "-fopenmp", *(SANITIZE_FLAGS if sanitize else [])]
    subprocess.run([*link, *listing.split("\n"), "-o", str(module)], check=True)
    stamp.write_text(listing)
    return module


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sanitize", action="store_true", help="with ASan + UBSan")
    print(build(sanitize=parser.parse_args().sanitize))
