"""An Open Job Description job for a conform: ``python conform_template.py DRYRUN.json -o job/template.yaml``.

From the JSON of ``cinescale conform CUT -o DIR --dry-run`` it writes one job
template: a ``Render <shot>`` step per shot (chunked with TASK_CHUNKING, like
``template.yaml``'s Render step, each task ``cinescale render ... --frames
<chunk> --job-frames <shot>``) and a ``Conform`` step after all of them that
runs the conform again: nothing is left to render, each shot's movie is
assembled and the cut relinked. Submit the folder as a job bundle
(``deadline bundle submit job/``) or run it with any OpenJD runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _literal(arg: str) -> str:
    # OpenJD format strings read "{{"; a value that holds one (a prompt) must not be taken for an expression
    return arg.replace("{{", "{ {")


def conform_template(report: dict, *, chunk: int = 10, cinescale: str = "cinescale") -> dict:
    steps = []
    for shot in report["shots"]:
        job = shot["render"]
        steps.append({
            "name": f"Render {shot['shot']}"[:64],
            "parameterSpace": {"taskParameterDefinitions": [{
                "name": "Frame", "type": "CHUNK[INT]", "range": job["frames"],
                "chunks": {"defaultTaskCount": chunk, "rangeConstraint": "CONTIGUOUS"}}]},
            "script": {"actions": {"onRun": {
                "command": cinescale,
                "args": ["render", job["input"], "-o", job["output"], *map(_literal, job["args"]),
                         "--frames", "{{Task.Param.Frame}}", "--job-frames", job["frames"], "--progress", "plain"],
                "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 120}}}},
        })
    steps.append({
        "name": "Conform",
        "dependencies": [{"dependsOn": s["name"]} for s in steps],
        "script": {"actions": {"onRun": {"command": cinescale,
                                         "args": [*map(_literal, report["command"]), "--progress", "plain"]}}},
    })
    name = os.path.basename(report["cut"])
    return {"specificationVersion": "jobtemplate-2023-09", "extensions": ["TASK_CHUNKING"],
            "name": f"cinescale conform {name}"[:128],
            "description": f"Render the shots of {name} and relink it (cinescale conform).", "steps": steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="the JSON of `cinescale conform CUT -o DIR --dry-run`")
    ap.add_argument("-o", "--output", required=True, help="template file to write (.yaml or .json)")
    ap.add_argument("--chunk", type=int, default=10, help="frames per task (default 10)")
    ap.add_argument("--cinescale", default="cinescale", help="the cinescale executable on the workers")
    args = ap.parse_args(argv)
    with open(args.report, encoding="utf-8") as fh:
        template = conform_template(json.load(fh), chunk=args.chunk, cinescale=args.cinescale)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        if args.output.endswith((".yaml", ".yml")):
            import yaml

            yaml.safe_dump(template, fh, sort_keys=False)
        else:
            json.dump(template, fh, indent=2)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
