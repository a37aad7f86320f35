"""SAM and MedSAM (ViT) through Meta's ``segment-anything`` package: prompted, no training."""
