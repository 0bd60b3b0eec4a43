"""The LightningModule and the networks it wraps."""
