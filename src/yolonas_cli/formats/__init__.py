"""Export formats: one module per format holding its export and its runtime backend, and their registry."""
