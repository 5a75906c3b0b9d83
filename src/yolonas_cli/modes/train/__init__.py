"""`yolo-nas train`: the training forward's loss (`loss`, `assigners`); the loop, data and optimizer come later."""
