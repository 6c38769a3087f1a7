#!/usr/bin/env python3
"""Check: no library function of xent has a stack frame over 64 KiB in a debug build.

Why: debug builds (`cargo test`, the debug `xent` binary) run their work on 2 MiB
thread stacks (Rust's default for spawned threads, rayon's workers and the test
harness), and an unoptimized build gives every inlined temporary its own stack slot,
so a kernel that is harmless in release can need megabytes of stack in debug. The
check reads the disassembly, so it covers every ISA variant compiled into a binary
(scalar, AVX2, AVX-512), also on a machine that cannot run AVX-512.

How: run `cargo test --workspace --no-run` (the same features as CI's `cargo test
--workspace`, so CI finds it all built), and check the dev-profile test binaries and
examples of the `xent` package and the debug `xent` CLI binary (each crate compiles
its own instances of the library's generics). Disassemble them with objdump (binutils)
and take each function's frame from its first 30 instructions (x86-64 only): `push`
(8 bytes each), `sub $M,%rsp`, the inline stack probe `mov %rsp,%r11; sub $N,%r11;
<loop>; jne` (N; the loop's own `sub $0x1000,%rsp` steps are not counted again), and
`mov $N,%eax; call __rust_probestack`.

Which functions count: those whose demangled name contains `xent::` (the library's
items, impls such as `<xent::kernels::... as ...>::...`, generic code instantiated
with xent types), except
  - names with `::tests::` (the library's unit tests: test code may hold big arrays),
  - functions whose debug-info source file is in this repository but outside
    crates/xent/src/ (the CLI's own code, whose crate is also named `xent`, and the
    tests' and other crates' own code).
A function counts once however many binaries hold it, and the report groups the
instances that share a name (one per crate that instantiates a generic). Names
get their generic arguments from the debug info when llvm-symbolizer is on PATH.

Usage: python3 .ci/stack_frames.py [--limit BYTES] [--no-build BINARY...]
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB_SRC = ROOT / "crates" / "xent" / "src"
PROLOGUE = 30  # instructions read per function
TOP = 15
HEADER = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s+[0-9a-f]+:\s+(.*?)\s*$")
IMM = r"\$0x([0-9a-f]+)"


def build():
    """Builds what `cargo test --workspace` builds; returns the binaries to check."""
    cmd = ["cargo", "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"]
    run = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if run.returncode != 0:
        sys.exit(f"stack frames: `{' '.join(cmd)}` failed")
    msgs = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    def wanted(m):  # the xent package's test binaries and examples, and the CLI binary
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            return False
        cli = m["target"]["kind"] == ["bin"] and not m["profile"]["test"]
        return cli or Path(m["manifest_path"]).resolve() == LIB_SRC.parent / "Cargo.toml"
    return [m["executable"] for m in msgs if wanted(m)]


def frame_size(insns):
    """The stack frame, in bytes, that a function's first instructions allocate."""
    size = eax = 0
    probe = loop = False
    for ins in insns:
        if loop:  # inside the probe loop, whose `sub $0x1000,%rsp` steps N already counts
            loop = not ins.startswith("jne")
        elif ins.startswith("push"):
            size += 8
        elif re.fullmatch(r"mov\s+%rsp,%r11", ins):
            probe = True
        elif probe and (m := re.fullmatch(rf"sub\s+{IMM},%r11", ins)):
            size, probe, loop = size + int(m[1], 16), False, True
        elif m := re.fullmatch(rf"sub\s+{IMM},%rsp", ins):
            size += int(m[1], 16)
        elif m := re.fullmatch(rf"mov\s+{IMM},%[er]ax", ins):
            eax = int(m[1], 16)
        elif ins.startswith("call") and "probestack" in ins:
            size += eax
    return size


def frames(exe):
    """(exe, {mangled name: (frame bytes, address)}) for every function in `exe`."""
    out, name, insns = {}, None, []
    objdump = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", exe],
                               stdout=subprocess.PIPE, text=True, errors="replace")
    for line in objdump.stdout:
        if line[0] == " ":
            if name and len(insns) < PROLOGUE and (m := INSN.match(line)):
                insns.append(m[1])
        elif m := HEADER.match(line):
            if name:
                out[name] = (frame_size(insns), addr)
            name, addr, insns = m[2], m[1], []
    if name:
        out[name] = (frame_size(insns), addr)
    if objdump.wait() != 0:
        sys.exit(f"stack frames: objdump failed on {exe}")
    return exe, out


def pipe(cmd, lines):
    """Runs a line filter (c++filt, addr2line) over `lines`; returns its output."""
    return subprocess.run(cmd, input="\n".join(lines) + "\n", stdout=subprocess.PIPE,
                          text=True, check=True).stdout


def symbolize(exe, addrs):
    """[("file:line", debug-info name or "")] for the functions at `addrs` in `exe`."""
    if not addrs:
        return []
    sources = [line.split(" ")[0] for line in pipe(["addr2line", "-e", exe], addrs).splitlines()]
    names = [""] * len(addrs)
    if shutil.which("llvm-symbolizer"):  # legacy symbol names lack the generic arguments
        out = pipe(["llvm-symbolizer", "--functions=short", "--no-inlines", f"--obj={exe}"], addrs)
        blocks = out.strip("\n").split("\n\n")
        names = [block.split("\n")[0] for block in blocks] if len(blocks) == len(addrs) else names
    return list(zip(sources, names))


def full_name(name, short):
    """`name` whose last segment gets the generic arguments from the debug info's `short`."""
    base = short.split("<")[0]
    return name[: -len(base)] + short if "<" in short and name.endswith("::" + base) else name


def is_library(name, source):
    if "xent::" not in name or "::tests::" in name:
        return False
    path = Path(source.rsplit(":", 1)[0])
    if str(path) == "??":  # no debug info: count it
        return True
    path = path if path.is_absolute() else ROOT / path
    return path.is_relative_to(LIB_SRC) or not path.is_relative_to(ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=64 * 1024, help="bytes (default 65536)")
    ap.add_argument("--no-build", action="store_true", help="check the BINARY paths given")
    ap.add_argument("binaries", nargs="*", metavar="BINARY")
    args = ap.parse_args()
    if platform.machine() not in ("x86_64", "AMD64"):
        print("stack frames: skipped, the prologue reader knows x86-64 only")
        return 0
    for tool in ("objdump", "addr2line", "c++filt"):
        if not shutil.which(tool):
            sys.exit(f"stack frames: `{tool}` not found (install binutils)")
    if args.no_build != bool(args.binaries):
        ap.error("give binaries exactly when --no-build is given")
    exes = args.binaries if args.no_build else build()
    if missing := [exe for exe in exes if not os.path.isfile(exe)]:
        sys.exit(f"stack frames: no such binary: {' '.join(missing)}")

    found = {}  # mangled name -> (bytes, name, source, binary)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for exe, table in pool.map(frames, sorted(set(exes), key=os.path.getsize)):
            table = {k: v for k, v in table.items() if k not in found}
            names = zip(table, pipe(["c++filt"], list(table)).splitlines())
            names = {k: re.sub(r"::h[0-9a-f]{16}$", "", v) for k, v in names if "xent::" in v}
            debug = symbolize(exe, ["0x" + table[k][1] for k in names])
            for (k, name), (source, short) in zip(names.items(), debug):
                if is_library(name, source):
                    source = source.replace(f"{ROOT}/", "")
                    found[k] = (table[k][0], full_name(name, short), source, Path(exe).name)
    if not found:
        sys.exit("stack frames: no xent functions found; did the disassembly format change?")

    groups = {}  # name -> its largest instantiation, and how many there are
    for f in sorted(found.values(), reverse=True):
        groups.setdefault(f[1], [f, 0])[1] += 1
    ranked = list(groups.values())

    def line(group):
        (size, name, source, exe), copies = group
        more = f", largest of {copies} instances" if copies > 1 else ""
        return f"{size:>10}  {name[:160]}  ({source}, in {exe}{more})"

    print(f"stack frames: the {TOP} largest of {len(found)} xent functions (bytes):")
    print("\n".join(line(g) for g in ranked[:TOP]))
    over = [g for g in ranked if g[0][0] > args.limit]
    if over:
        print(f"stack frames: FAIL: {len(over)} xent functions have frames over {args.limit} bytes:")
        print("\n".join(line(g) for g in over))
        return 1
    size, name = ranked[0][0][:2]
    print(f"stack frames: {len(found)} xent functions checked, largest {size} bytes ({name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
