"""degradation: plain vs residual nets and the degradation problem (He et al. 2015)."""

from degradation.resolvers import register_recipe_resolvers

__version__ = "0.1.0"

# The schema's own defaults and saved configs use these: every importer can resolve them.
register_recipe_resolvers()
