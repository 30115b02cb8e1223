"""The calibration corpus: real tiny ``trl.DPOTrainer`` runs over a designed grid (see README.md here)."""
