"""degradation: plain vs residual nets and the degradation problem (He et al. 2015)."""

__version__ = "0.1.0"
