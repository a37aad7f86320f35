"""medsam2-bench: MedSAM-2 (Zhu et al. 2024) and baselines as a reproducible benchmark."""

__version__ = "0.1.0"
