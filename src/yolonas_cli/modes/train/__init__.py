"""`yolo-nas train`: fine-tuning YOLO-NAS the way the original recipes do (training-facts.md).

data (augment, data) -> model in train mode -> loss -> optimizer, schedule, EMA -> checkpoints.
"""
