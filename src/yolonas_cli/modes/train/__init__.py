"""`yolo-nas train`: fine-tune YOLO-NAS exactly as the original trainer does (see training-facts.md)."""
