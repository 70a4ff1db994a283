"""degradation: plain vs residual nets and the degradation problem (He et al. 2015).

    from degradation import load_run
    run = load_run("outputs/runs/default/default", checkpoint="best")  # run.model, .spec, .data

The Python API (README.md): `load_run` here; `degradation.models.build_model`,
`degradation.module.Classifier` (`Classifier.load_from_checkpoint(path)`).
"""

from degradation.resolvers import register_recipe_resolvers

__version__ = "0.1.0"

# The schema's own defaults and saved configs use these: every importer can resolve them.
register_recipe_resolvers()


def __getattr__(name: str):
    # imported on first use: `degradation.run --help` and tab completion load no torch
    if name == "load_run":
        from degradation.analyze.trained import load_run

        return load_run
    raise AttributeError(f"module 'degradation' has no attribute {name!r}")
