"""Why skips help, measured: gradient flow, loss landscapes and lesion studies.

    python -m degradation.analyze landscape RUN_DIR... [--steps 21 --span 1.0 --subset 512 ...]
    python -m degradation.analyze lesion RUN_DIR... [--checkpoint last|best --limit N]

Modules (imported one by one, so that training does not load matplotlib):
  gradients.py  GradientFlow, the training callback writing RUN_DIR/grad_norms.csv;
                gradient_norms(model) for the model's current gradients
  landscape.py  loss_landscape(model, images, labels, ...), filter_normalize(direction, model)
  lesion.py     lesion_study(model, images, labels), DeletedBlock(block)
  trained.py    load_run(run_dir, checkpoint, device): a finished run's config, data and model
  plots.py      the figures; analysis_figures(run_dirs, out_dir) for the report
"""
