# medsam2-bench: download -> convert -> train -> predict -> evaluate -> report.
# Default config: the CPU demo. Paper reproduction: --configfile config/paper.yaml.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The demo config is the default; a --configfile replaces it instead of being merged into
# it (a merge would leak the demo's datasets and models into the paper run).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
wildcard_constraints:
    model=names_regex(list(SPEC.models)),


include: "workflow/rules/data.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/medsam2.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# One folder per baseline kind: included when a model of that kind is configured.
for _kind in sorted({spec.kind for spec in SPEC.models.values()}):
    if (Path(workflow.basedir) / "baselines" / _kind / "rules.smk").is_file():

        include: f"baselines/{_kind}/rules.smk"


# trivial jobs stay on the submitting node instead of waiting in a cluster queue
localrules:
    all,
    resolved_config,


rule all:
    default_target: True
    input:
        all_metrics_files(),
        sensitivity_files(),
        rules.report.output,
