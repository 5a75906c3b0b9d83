"""Detection datasets: the Ultralytics YAML, YOLO txt labels, COCO JSON annotations and their download."""
