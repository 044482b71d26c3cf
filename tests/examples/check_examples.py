#!/usr/bin/env python3
"""The shipped launch examples (examples/slurm/*.sbatch, examples/kubernetes/*.yaml) checked
against the contract they target and against strand itself: the manifests parse, name their
kind's required fields (MPIJob: a Launcher and Worker replica, slotsPerWorker; TFJob: a PS and a
Chief or Worker replica, containers named "tensorflow"), every `strand` command line in them
uses only subcommands and flags the built strand accepts (its --help), and every STRAND_ or
SM_ variable they set is one strand reads (named in its sources).
Usage: check_examples.py STRAND SOURCE_ROOT"""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

strand, root = sys.argv[1], pathlib.Path(sys.argv[2])
errors = []


def fail(where, what):
    errors.append(f"{where}: {what}")


help_cache = {}


def flags_of(sub):
    if sub not in help_cache:
        r = subprocess.run([strand, sub, "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            help_cache[sub] = None
        else:
            help_cache[sub] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout))
    return help_cache[sub]


def check_command(where, words):
    """words: a strand command line after `strand`."""
    if not words:
        return fail(where, "strand without a subcommand")
    sub = words[0]
    known = flags_of(sub)
    if known is None:
        return fail(where, f"'strand {sub}' is not a strand command")
    for w in words[1:]:
        flag = w.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            fail(where, f"strand {sub} has no flag {flag}")


source_text = "\n".join(
    p.read_text(errors="replace")
    for d in ("apps", "job", "ps", "serve", "elastic", "allreduce", "core", "io", "train")
    for p in (root / d).rglob("*") if p.suffix in (".cpp", ".hpp"))


def check_variable(where, name):
    if re.match(r"(STRAND|SM)_", name) and f'"{name}"' not in source_text:
        fail(where, f"sets {name}, which strand does not read")


# Slurm batch scripts: #SBATCH lines are sbatch's, the srun ... strand lines strand's.
# sbatch prints its help only with a configuration to read: a minimal one.
sbatch_options = None
if shutil.which("sbatch"):
    with tempfile.TemporaryDirectory() as tmp:
        conf = pathlib.Path(tmp) / "slurm.conf"
        conf.write_text("ClusterName=check\nSlurmctldHost=localhost\nNodeName=localhost\n"
                        "PartitionName=p Nodes=localhost Default=YES\n")
        r = subprocess.run(["sbatch", "--help"], capture_output=True, text=True,
                           env={**os.environ, "SLURM_CONF": str(conf)})
        if r.returncode == 0:
            sbatch_options = set(re.findall(r"(--[a-z][a-z-]*)", r.stdout))
        else:
            fail("sbatch --help", r.stderr.strip()[-200:])
scripts = sorted((root / "examples/slurm").glob("*.sbatch"))
if not scripts:
    fail("examples/slurm", "no batch scripts")
for path in scripts:
    where = str(path.relative_to(root))
    text = path.read_text()
    if not text.startswith("#!/bin/bash"):
        fail(where, "does not start with #!/bin/bash")
    for line in text.splitlines():
        m = re.match(r"#SBATCH\s+(--[a-z-]+)", line)
        if m and sbatch_options is not None and m.group(1) not in sbatch_options:
            fail(where, f"sbatch has no option {m.group(1)}")
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = [l for l in joined.splitlines()
                if re.search(r"\bstrand (train|serve)\b", l) and not l.startswith("#")]
    if not commands:
        fail(where, "runs no strand command")
    for line in commands:
        words = shlex.split(line)
        check_command(where, words[words.index("strand") + 1:])
    if subprocess.run(["bash", "-n", str(path)]).returncode != 0:
        fail(where, "bash -n finds a syntax error")

# Kubernetes manifests.
manifests = sorted((root / "examples/kubernetes").glob("*.yaml"))
kinds = set()
for path in manifests:
    where = str(path.relative_to(root))
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as e:
        fail(where, f"not valid YAML: {e}")
        continue
    for doc in docs:
        kind = doc.get("kind")
        kinds.add(kind)
        spec = doc.get("spec") or {}
        if (not doc.get("apiVersion", "").startswith("kubeflow.org/")
                or not doc.get("metadata", {}).get("name")):
            fail(where, "wants a kubeflow.org apiVersion and a metadata.name")
        if kind == "MPIJob":
            replicas = spec.get("mpiReplicaSpecs") or {}
            if set(replicas) != {"Launcher", "Worker"} or not isinstance(spec.get("slotsPerWorker"), int):
                fail(where, "an MPIJob wants mpiReplicaSpecs Launcher and Worker and an integer "
                     "slotsPerWorker")
        elif kind == "TFJob":
            replicas = spec.get("tfReplicaSpecs") or {}
            if "PS" not in replicas or not ({"Chief", "Master", "Worker"} & set(replicas)):
                fail(where, "a TFJob for strand wants a PS replica and a Chief, Master or Worker")
        else:
            fail(where, f"kind {kind}: want MPIJob or TFJob")
            continue
        for role, r in replicas.items():
            if not isinstance(r.get("replicas"), int) or r["replicas"] < 1:
                fail(where, f"{role}: replicas must be a positive integer")
            containers = (((r.get("template") or {}).get("spec") or {}).get("containers")) or []
            if not containers:
                fail(where, f"{role}: no containers")
            for c in containers:
                here = f"{where}: {role}"
                if kind == "TFJob" and c.get("name") != "tensorflow":
                    fail(here, "TFJob's operator wants the container named 'tensorflow'")
                line = [str(w) for w in (c.get("command") or []) + (c.get("args") or [])]
                if "strand" in line:
                    check_command(here, line[line.index("strand") + 1:])
                elif line and not c.get("command"):  # args to the image's entrypoint (strand)
                    check_command(here, line)
                for e in c.get("env") or []:
                    check_variable(here, e.get("name", ""))
for want in ("MPIJob", "TFJob"):
    if want not in kinds:
        fail("examples/kubernetes", f"no {want} manifest")

for e in errors:
    print("FAIL:", e)
print(f"{len(scripts)} batch script(s), {len(manifests)} manifest(s): "
      + ("PASS" if not errors else f"{len(errors)} problem(s)"))
sys.exit(1 if errors else 0)
