"""Evaluation metrics: FID/IS/precision-recall/KID, demo features, linear probe."""
