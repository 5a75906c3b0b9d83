"""Detection metrics: matching, pycocotools COCO mAP, P/R curves, the confusion matrix, plots, the original's metric."""
