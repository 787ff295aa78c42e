"""Rule pseudo_label: keep confident test predictions as extra labeled rows."""

from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.pseudo import pseudo_label_files

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
report = run_main(
    pseudo_label_files,
    list(sm.input.probs),  # one file per teacher (pseudo_label.teachers)
    sm.input.test,
    sm.output.rows,
    sm.output.report,
    threshold=sm.params.threshold,
    max_per_class=sm.params.max_per_class,
    soft=sm.params.soft,
    log_file=sm.log[0],
)
log.info("accepted %d of %d test rows", report["accepted"], report["test_rows"])
