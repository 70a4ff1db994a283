"""Why skips help, measured: gradient flow, loss landscapes and lesion studies.

    python -m degradation.analyze landscape RUN_DIR... [--steps 21 --span 1.0 --subset 512 ...]
    python -m degradation.analyze lesion RUN_DIR... [--checkpoint last|best --limit N]
    python -m degradation.analyze responses RUN_DIR... [--checkpoint last|best]

Gradient norms are recorded during training (`callbacks.GradientFlow`, grad_norms.csv) and the
layer responses at its end (layer_responses.json); the modules here work on finished runs.
Modules (imported one by one, so that training does not load matplotlib):
  trained.py    load_run(run_dir, checkpoint, device): a finished run's config, data and model
  landscape.py  loss_landscape(model, images, labels, ...), filter_normalize(direction, model)
  lesion.py     lesion_study(model, images, labels), DeletedBlock(block)
  responses.py  measure_run(run_dir): layer_responses.json from a checkpoint (older runs)
  summaries.py  the numbers the captions state (landscape increase and curvature, lesion
                headroom lost, gradient profile, early explosion; spread over seeds, the
                curvature comparison)
  plots.py      the figures (drawing only)
  figures.py    analysis_figures(runs, out_dir) for the report: every seed of each variant,
                recipes apart, captions and analysis.json
"""
